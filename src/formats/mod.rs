//! The on-disk formats mkstick reads and writes, with no knowledge of the
//! pipeline: the GPT ([`gpt`]), the FAT32 EFI partition ([`fat`]) and the
//! cpio initrds ([`initrd`]). The acquire stage reads them (a Flatcar
//! `efiboot.img`, an initramfs) and the image stage writes them.

pub mod fat;
pub mod gpt;
pub mod initrd;
