//! A containers-storage store written as containers-storage writes it
//! (overlay driver): `storage.conf`, the record files and the layer
//! directories, for the tests.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::digest::sha256;
use crate::runtime::docker::fixture::id as hex;

/// One layer written.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Its containers-storage ID.
    pub id: String,
    /// Its diff ID (`sha256:…`).
    pub diff: String,
    /// Its `diff` directory.
    pub dir: PathBuf,
}

/// A store under a temp dir: graph root `storage/`, run root `run/`,
/// `storage.conf` naming them.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    layers: Vec<Value>,
    images: Vec<Value>,
    containers: Vec<Value>,
}

impl Store {
    /// An empty store in `dir`, and its `storage.conf`.
    pub fn create(dir: &Path) -> io::Result<Store> {
        let store = Store {
            dir: dir.to_path_buf(),
            layers: Vec::new(),
            images: Vec::new(),
            containers: Vec::new(),
        };
        fs::create_dir_all(store.graph_root())?;
        store.conf_with(&[])?;
        Ok(store)
    }

    /// The graph root.
    pub fn graph_root(&self) -> PathBuf {
        self.dir.join("storage")
    }

    /// The run root.
    pub fn run_root(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// Its `storage.conf`.
    pub fn conf(&self) -> PathBuf {
        self.dir.join("storage.conf")
    }

    /// Writes `storage.conf` with `additional` image stores.
    pub fn conf_with(&self, additional: &[&Path]) -> io::Result<()> {
        let stores: Vec<String> = additional
            .iter()
            .map(|p| format!("{:?}", p.display().to_string()))
            .collect();
        let text = format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = {:?}\nrunroot = {:?}\n\
             [storage.options]\nadditionalimagestores = [{}]\n",
            self.graph_root().display().to_string(),
            self.run_root().display().to_string(),
            stores.join(", ")
        );
        fs::write(self.conf(), text)
    }

    /// Writes `contents` at `rel` under the graph root.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> io::Result<PathBuf> {
        let path = self.graph_root().join(rel);
        fs::create_dir_all(path.parent().unwrap_or(&path))?;
        fs::write(&path, contents)?;
        Ok(path)
    }

    /// A layer on `parent` holding one file of `bytes` bytes, ID'd as
    /// containers/image does (the diff ID's hex for a base layer, else the
    /// sha256 of `<parent ID>+<diff hex>`), `incomplete` when still written.
    pub fn layer(
        &mut self,
        parent: Option<&Layer>,
        label: &str,
        bytes: usize,
        incomplete: bool,
    ) -> io::Result<Layer> {
        let diff = format!("sha256:{}", hex(&format!("diff {label}")));
        let id = match parent {
            None => diff[7..].to_string(),
            Some(p) => sha256(format!("{}+{}", p.id, &diff[7..]).as_bytes())[7..].to_string(),
        };
        let dir = self.write(&format!("overlay/{id}/diff/{label}"), vec![b'x'; bytes])?;
        let mut record = json!({"id": id, "created": "2024-06-01T12:00:00Z"});
        if let Some(p) = parent {
            record["parent"] = json!(p.id);
        }
        if incomplete {
            record["flags"] = json!({"incomplete": true});
        } else {
            record["diff-digest"] = json!(diff);
            record["diff-size"] = json!(bytes + 1024);
        }
        self.layers.push(record);
        self.save("overlay-layers/layers.json", &self.layers)?;
        Ok(Layer {
            id,
            diff,
            dir: dir.parent().map(Path::to_path_buf).unwrap_or_default(),
        })
    }

    /// An image named `names` whose top layer is `top`; its 64-hex ID.
    pub fn image(&mut self, label: &str, names: &[&str], top: &Layer) -> io::Result<String> {
        let id = hex(&format!("image {label}"));
        self.images.push(json!({
            "id": id, "names": names, "layer": top.id,
            "created": "2024-02-03T04:05:06.5Z",
            "big-data-names": ["manifest"],
        }));
        self.save("overlay-images/images.json", &self.images)?;
        Ok(id)
    }

    /// A container of image `image` (whose top layer is `top`) named
    /// `name`, its writable layer holding `bytes`; its ID and layer.
    pub fn container(
        &mut self,
        name: &str,
        image: &str,
        top: &Layer,
        bytes: usize,
    ) -> io::Result<(String, Layer)> {
        let id = hex(&format!("container {name}"));
        let layer = self.layer(Some(top), &format!("rw {name}"), bytes, false)?;
        // A container's layer has no diff digest: it was never applied.
        let last = self.layers.len() - 1;
        self.layers[last] =
            json!({"id": layer.id, "parent": top.id, "names": [format!("{name}-layer")]});
        self.save("overlay-layers/layers.json", &self.layers)?;
        let metadata = json!({"image-name": "localhost/app:1", "image-id": image, "name": name});
        self.containers.push(json!({
            "id": id, "names": [name], "image": image, "layer": layer.id,
            "metadata": metadata.to_string(),
        }));
        self.save("overlay-containers/containers.json", &self.containers)?;
        Ok((id, layer))
    }

    /// CRI-O's OCI spec of container `id`, with `annotations`.
    pub fn spec(&self, id: &str, annotations: &Value) -> io::Result<()> {
        let path = self
            .run_root()
            .join(format!("overlay-containers/{id}/userdata/config.json"));
        fs::create_dir_all(path.parent().unwrap_or(&path))?;
        fs::write(
            path,
            json!({"ociVersion": "1.0.2", "annotations": annotations}).to_string(),
        )
    }

    fn save(&self, rel: &str, records: &[Value]) -> io::Result<()> {
        self.write(rel, Value::from(records.to_vec()).to_string())
            .map(drop)
    }
}
