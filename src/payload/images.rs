//! The container images a stick carries -> OCI image layouts
//! (opencontainers/image-spec `image-layout.md`): `oci-layout`,
//! `index.json` and `blobs/sha256/<hex>`. Every file is named by its sha256,
//! so a layer several images share is stored once.
//!
//! Per image a layout holds the top-level manifest the pin names (usually
//! a multi-arch index, as the registry served it), the manifest for the
//! stick's platform, its config and its layers. Other platforms' manifests
//! are left out: containerd's import walks only the platform it runs on
//! (containerd `core/images/archive/importer.go`, `images.FilterPlatforms`),
//! and so does podman's (containers/image `copy`, which copies the
//! instance for the system's platform from an index).
//!
//! `mkstick/images/` is containerd's: its `index.json` names each image
//! twice, by tag and by digest, in the `io.containerd.image.name`
//! annotation that `ctr images import` makes the image's name from, and in
//! `org.opencontainers.image.ref.name`. The digest name matters: the CRI
//! looks `NAME:TAG@sha256:…` up as `NAME@sha256:…` (containerd
//! `internal/cri/server/images/service.go` `LocalResolve` via
//! `docker.ParseDockerRef`), and the tag name is what kubeadm's ImagePull
//! check asks for.
//!
//! `mkstick/nfs-image/` is podman's, for the NFS server container: one
//! image, named once, by tag. The node streams it as a tar into `podman
//! load`, which reads it as an oci-archive. That needs exactly one entry in
//! `index.json` (containers/image `oci/internal` refuses to choose among
//! several without a name), and takes the image's name from the entry's
//! annotation (containers/common `libimage/pull.go`, `copyFromDefault` and
//! `nameFromAnnotations`); without one, podman would name the image after
//! nothing but its ID.

use super::{bytes_file, EspFile, Region, Source};
use crate::os::registry::{PulledImage, OCI_INDEX};
use serde_json::json;
use std::collections::BTreeMap;

/// containerd's layout's directory on the EFI partition.
pub const IMAGES_DIR: &str = "mkstick/images";
/// podman's layout, of the NFS server's image.
pub const NFS_IMAGE_DIR: &str = "mkstick/nfs-image";

/// Every file of containerd's layout, each once.
pub fn layout(images: &[PulledImage]) -> Vec<EspFile> {
    layout_at(IMAGES_DIR, images, |r, top| {
        vec![
            format!("{}:{}", r.name(), r.tag.as_deref().unwrap_or_default()),
            format!("{}@sha256:{top}", r.name()),
        ]
    })
}

/// Every file of podman's layout of the NFS server's image.
pub fn nfs_layout(image: Option<&PulledImage>) -> Vec<EspFile> {
    layout_at(
        NFS_IMAGE_DIR,
        image.map(std::slice::from_ref).unwrap_or_default(),
        |r, _| {
            vec![format!(
                "{}:{}",
                r.name(),
                r.tag.as_deref().unwrap_or_default()
            )]
        },
    )
}

/// A layout at `dir` of `images`, each named in `index.json` by each of
/// `names(reference, top-level digest)`.
fn layout_at(
    dir: &str,
    images: &[PulledImage],
    names: impl Fn(&crate::os::registry::Reference, &crate::io::Sha256Digest) -> Vec<String>,
) -> Vec<EspFile> {
    if images.is_empty() {
        return Vec::new();
    }
    let blob_path = |hex: &crate::io::Sha256Digest| format!("{dir}/blobs/sha256/{hex}");
    let mut files: BTreeMap<String, EspFile> = BTreeMap::new();
    let mut entries = Vec::new();
    for image in images {
        for m in [&image.top, &image.manifest] {
            let path = blob_path(&m.digest);
            files
                .entry(path.clone())
                .or_insert_with(|| bytes_file(&path, m.bytes.clone(), Region::Os));
        }
        for b in std::iter::once(&image.config).chain(&image.layers) {
            let path = blob_path(&b.digest);
            files.entry(path.clone()).or_insert_with(|| EspFile {
                path,
                size_bytes: b.size_bytes,
                sha256: b.digest,
                source: Source::Os(b.path.clone()),
                region: Region::Os,
            });
        }
        for name in names(&image.reference, &image.top.digest) {
            entries.push(json!({
                "mediaType": image.top.media_type,
                "digest": format!("sha256:{}", image.top.digest),
                "size": image.top.bytes.len(),
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name,
                },
            }));
        }
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": entries,
    });
    let mut index = serde_json::to_vec_pretty(&index).expect("JSON values serialize");
    index.push(b'\n');
    let mut out = vec![
        bytes_file(
            &format!("{dir}/oci-layout"),
            b"{\"imageLayoutVersion\":\"1.0.0\"}\n".to_vec(),
            Region::Os,
        ),
        bytes_file(&format!("{dir}/index.json"), index, Region::Os),
    ];
    out.extend(files.into_values());
    out
}
