//! `[extra] manifests`: the user's files, each checked to hold Kubernetes
//! objects the API server would take, before anything is downloaded.

use crate::config::{LoadedConfig, SourceError};
use crate::os::registry::Reference;
use anyhow::{bail, Context, Result};

/// One of the user's manifest files, checked to be Kubernetes YAML.
#[derive(Debug, Clone, PartialEq)]
pub struct UserManifest {
    /// The file's path as given or found, for messages.
    pub name: String,
    /// `/etc/mkstick/manifests/50-extra-NN-<file>.yaml` on the node.
    pub node_path: String,
    pub contents: String,
    pub documents: usize,
    /// The container images it names, each with the line it is on.
    pub images: Vec<(usize, Reference)>,
}

/// The files of `[extra] manifests`, each checked to hold Kubernetes objects.
pub(super) fn user_manifests(loaded: &LoadedConfig) -> Result<Vec<UserManifest>> {
    let mut files = Vec::new();
    for entry in &loaded.config.extra.manifests {
        let path = loaded.resolve(entry.get_ref());
        let meta = std::fs::metadata(&path).map_err(|e| {
            loaded.error_at(
                entry,
                format!(
                    "cannot read {}: {e}; fix the path or remove it from [extra] manifests",
                    path.display()
                ),
            )
        })?;
        if meta.is_dir() {
            let mut found: Vec<_> = std::fs::read_dir(&path)
                .with_context(|| format!("listing {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && matches!(
                            p.extension().and_then(|e| e.to_str()),
                            Some("yaml" | "yml" | "json")
                        )
                })
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(loaded
                    .error_at(
                        entry,
                        format!("{} holds no .yaml, .yml or .json files; add your manifests there or remove it from [extra] manifests", path.display()),
                    )
                    .into());
            }
            files.extend(found);
        } else {
            files.push(path);
        }
    }
    let mut out = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("reading {} (a manifest must be UTF-8 text)", path.display())
        })?;
        let documents = check_manifest(path, &text)?;
        let mut images = Vec::new();
        for (at, image) in manifest_images(path, &text)? {
            let bad = |msg: String| SourceError::at(path, &text, at, msg);
            let r: Reference = image.parse().map_err(|e| bad(format!("{e:#}")))?;
            if r.tag.as_deref() == Some("latest") && r.digest.is_none() {
                return Err(bad(format!(
                    "`{image}`: `latest` moves, so the stick cannot carry it and the kubelet pulls it at every start; name a version tag (or a digest) instead"
                ))
                .into());
            }
            let line = text[..at].matches('\n').count() + 1;
            images.push((line, r));
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("manifest")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect::<String>();
        out.push(UserManifest {
            name: path.display().to_string(),
            node_path: format!("/etc/mkstick/manifests/50-extra-{:04}-{stem}.yaml", i + 1),
            contents: text,
            documents,
            images,
        });
    }
    Ok(out)
}

/// The most an object may weigh when stored: etcd's default request limit
/// (`--max-request-bytes`, 1.5 MiB; etcd `server/embed/config.go`
/// DefaultMaxRequestBytes), which kubeadm's etcd keeps.
pub const MAX_OBJECT_BYTES: usize = 3 << 19;

/// The most data a ConfigMap or Secret may hold: 1 MiB (`MaxSecretSize`,
/// kubernetes `pkg/apis/core/validation/validation.go`, ValidateConfigMap
/// counts keys and values, ValidateSecret the decoded values).
pub const MAX_DATA_BYTES: usize = 1 << 20;

/// Every document of a manifest is a Kubernetes object (it names its
/// apiVersion and kind) or empty, and is small enough for the API server.
/// Returns how many objects it holds.
///
/// Like kubectl (`k8s.io/apimachinery/pkg/util/yaml` NewYAMLOrJSONDecoder,
/// hasJSONPrefix), a text whose first non-space character is `{` is read as
/// a stream of JSON objects, strictly: a trailing comma that YAML would
/// forgive fails `kubectl apply` on the server.
pub fn check_manifest(path: &std::path::Path, text: &str) -> Result<usize> {
    let documents = documents(path, text)?;
    check_objects(path, text, &documents)
}

/// Every container image a manifest names (`containers`,
/// `initContainers` and `ephemeralContainers`, at any depth, so Pods,
/// workloads' templates and CronJobs alike), in order, each with the byte
/// offset where it is written.
pub fn manifest_images(path: &std::path::Path, text: &str) -> Result<Vec<(usize, String)>> {
    Ok(manifest_containers(path, text)?
        .into_iter()
        .map(|(at, image, _)| (at, image))
        .collect())
}

/// [`manifest_images`], each with the container's `imagePullPolicy` when
/// it sets one.
pub fn manifest_containers(
    path: &std::path::Path,
    text: &str,
) -> Result<Vec<(usize, String, Option<String>)>> {
    fn walk(v: &serde_json::Value, out: &mut Vec<(String, Option<String>)>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, child) in m {
                    if matches!(
                        k.as_str(),
                        "containers" | "initContainers" | "ephemeralContainers"
                    ) {
                        for c in child.as_array().into_iter().flatten() {
                            if let Some(image) = c.get("image").and_then(|i| i.as_str()) {
                                let policy = c
                                    .get("imagePullPolicy")
                                    .and_then(|p| p.as_str())
                                    .map(str::to_string);
                                out.push((image.to_string(), policy));
                            }
                        }
                    }
                    walk(child, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (at, value) in documents(path, text)? {
        let mut images = Vec::new();
        walk(&value, &mut images);
        // The JSON map is in key order, not the file's: find each image's
        // text in its document, a repeated one at its next place.
        let mut found: Vec<(usize, String, Option<String>)> = Vec::new();
        for (image, policy) in images {
            let mut from = at;
            let pos = loop {
                match text[from..].find(&image) {
                    Some(i) if found.iter().any(|(p, _, _)| *p == from + i) => from += i + 1,
                    Some(i) => break from + i,
                    None => break at,
                }
            };
            found.push((pos, image, policy));
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

/// The documents of a manifest as JSON values, each with its byte offset.
fn documents(path: &std::path::Path, text: &str) -> Result<Vec<(usize, serde_json::Value)>> {
    use serde::Deserialize;
    let mut documents: Vec<(usize, serde_json::Value)> = Vec::new();
    if text.trim_start().starts_with('{') {
        let mut stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
        loop {
            let at = text.len() - text[stream.byte_offset()..].trim_start().len();
            match stream.next() {
                None => break,
                Some(Ok(v)) => documents.push((at, v)),
                Some(Err(e)) => {
                    return Err(SourceError::json(
                        path,
                        text,
                        &e,
                        "kubectl reads a manifest that starts with `{` as strict JSON; fix the JSON (no trailing commas or comments)",
                    )
                    .into())
                }
            }
        }
    } else {
        let starts = yaml_document_starts(text);
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let value = serde_yaml_ng::Value::deserialize(doc).map_err(|e| {
                let at = e.location().map_or(0, |l| l.index());
                SourceError::at(path, text, at, format!("{e}; fix the YAML"))
            })?;
            let at = starts.get(i).copied().unwrap_or(0);
            let value = serde_json::to_value(&value).map_err(|e| {
                SourceError::at(
                    path,
                    text,
                    at,
                    format!("this document cannot be sent to the API server as JSON ({e}); use string keys"),
                )
            })?;
            documents.push((at, value));
        }
    }
    Ok(documents)
}

/// [`check_manifest`] on parsed documents.
fn check_objects(
    path: &std::path::Path,
    text: &str,
    documents: &[(usize, serde_json::Value)],
) -> Result<usize> {
    let mut objects = 0;
    for (at, value) in documents {
        if value.is_null() {
            continue;
        }
        let field = |k: &str| value.get(k).and_then(|v| v.as_str());
        let (Some(_), Some(kind)) = (field("apiVersion"), field("kind")) else {
            return Err(SourceError::at(
                path,
                text,
                *at,
                format!(
                    "document {} is not a Kubernetes object: it needs `apiVersion` and `kind`",
                    objects + 1
                ),
            )
            .into());
        };
        objects += 1;
        let name = value
            .pointer("/metadata/name")
            .and_then(|v| v.as_str())
            .unwrap_or("(unnamed)");
        let too_big =
            |what: String| -> anyhow::Error { SourceError::at(path, text, *at, what).into() };
        let data = data_bytes(kind, value);
        if data > MAX_DATA_BYTES {
            return Err(too_big(format!(
                "{kind} `{name}` holds {} of data, and the API server refuses more than 1 MiB in a {kind}; keep large files on the NFS storage (a PersistentVolumeClaim) or in a container image",
                crate::io::human_bytes(data as u64)
            )));
        }
        let size = serde_json::to_vec(value).map_or(0, |v| v.len());
        if size > MAX_OBJECT_BYTES {
            return Err(too_big(format!(
                "{kind} `{name}` is {} as JSON, and etcd stores at most 1.5 MiB per object; split it, or keep large data on the NFS storage",
                crate::io::human_bytes(size as u64)
            )));
        }
    }
    if objects == 0 {
        bail!(
            "{}: holds no Kubernetes objects; remove it from [extra] manifests",
            path.display()
        );
    }
    Ok(objects)
}

/// The bytes of data the API server counts against [`MAX_DATA_BYTES`].
fn data_bytes(kind: &str, object: &serde_json::Value) -> usize {
    let map = |key: &str| {
        object
            .get(key)
            .and_then(|m| m.as_object())
            .into_iter()
            .flatten()
    };
    let text_len = |v: &serde_json::Value| v.as_str().map_or(0, str::len);
    // base64 without decoding: 3 bytes per 4 characters, less the padding.
    let decoded_len = |v: &serde_json::Value| {
        v.as_str().map_or(0, |s| {
            let s = s.trim_end_matches('=');
            s.len() / 4 * 3 + (s.len() % 4).saturating_sub(1)
        })
    };
    match kind {
        "ConfigMap" => {
            map("data")
                .map(|(k, v)| k.len() + text_len(v))
                .sum::<usize>()
                + map("binaryData")
                    .map(|(k, v)| k.len() + decoded_len(v))
                    .sum::<usize>()
        }
        "Secret" => {
            map("data").map(|(_, v)| decoded_len(v)).sum::<usize>()
                + map("stringData").map(|(_, v)| text_len(v)).sum::<usize>()
        }
        _ => 0,
    }
}

/// Where each YAML document of `text` starts, in the order a YAML parser
/// yields them: at the top, and at every `---` line.
fn yaml_document_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut offset = 0;
    let mut first_content = true;
    for line in text.split_inclusive('\n') {
        let marker =
            line.starts_with("---") && line[3..].chars().next().is_none_or(char::is_whitespace);
        let blank = line.trim().is_empty() || line.trim_start().starts_with('#');
        if marker {
            starts.push(offset);
            first_content = false;
        } else if first_content && !blank {
            // Content before any marker: the first document.
            starts.push(offset);
            first_content = false;
        }
        offset += line.len();
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_found_in_every_container_list_at_their_line() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  initContainers:\n    - name: i\n      image: busybox:1.36\n  containers:\n    - name: c\n      image: \"nginx:1.27\"\n---\napiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: j\nspec:\n  schedule: \"@daily\"\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n            - name: j\n              image: ghcr.io/a/b@sha256:0000000000000000000000000000000000000000000000000000000000000000\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  image: not-an-image:1\n";
        let found = manifest_images(std::path::Path::new("x.yaml"), text).unwrap();
        let lines: Vec<(usize, &str)> = found
            .iter()
            .map(|(at, i)| (text[..*at].matches('\n').count() + 1, i.as_str()))
            .collect();
        assert_eq!(
            lines,
            [
                (8, "busybox:1.36"),
                (11, "nginx:1.27"),
                (
                    25,
                    "ghcr.io/a/b@sha256:0000000000000000000000000000000000000000000000000000000000000000"
                ),
            ]
        );
    }
}
