//! The autoencoder's `model.safetensors` and checkpoints.

use super::{AeNet, AeProgress, AeSettings, Epoch, Generator};
use crate::error::{Error, Result};
use crate::methods::rrr::Model;

/// A trained autoencoder as stored in `model.safetensors`: net, settings,
/// weights, the per-code-node empirical code values (to sample Z from) and,
/// when trained, the generator's classifier.
#[derive(Clone, Debug)]
pub struct AeModel {
    /// The cyclic net.
    pub net: AeNet,
    /// Training settings.
    pub settings: AeSettings,
    /// Consensus weights (problem edge order) and biases.
    pub model: Model,
    /// Per code node, the encodings of the training data (the iDE lists).
    pub code_lists: Vec<Vec<f64>>,
    /// The genuine/fake classifier, if trained.
    pub generator: Option<Generator>,
    /// Epochs trained and the code sampler's state after them.
    pub progress: AeProgress,
    /// Metrics of the trained epochs (a checkpoint's, for resuming).
    pub history: Vec<Epoch>,
}

impl AeModel {
    /// safetensors bytes: `weights`, `biases`, `code_values` [C × n] and,
    /// with a generator, `gen_weights`, `gen_biases`; nets and settings in
    /// the metadata (net files in the reference formats).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        use crate::io::{NamedTensor, safetensors_bytes};
        let n = self.code_lists.first().map_or(0, |l| l.len());
        let mut tensors = vec![
            NamedTensor {
                name: "weights".into(),
                shape: vec![self.model.weights.len()],
                data: self.model.weights.clone(),
            },
            NamedTensor {
                name: "biases".into(),
                shape: vec![self.model.biases.len()],
                data: self.model.biases.clone(),
            },
            NamedTensor {
                name: "code_values".into(),
                shape: vec![self.code_lists.len(), n],
                data: self.code_lists.concat(),
            },
        ];
        let mut meta = serde_json::json!({
            "method": "rrr autoencode",
            "net": self.net.to_text(),
            "settings": self.settings,
            "edge_order": "sorted by destination, then source",
            "epoch": self.progress.epoch,
            // u128 does not fit a JSON number.
            "sampler_pos": self.progress.sampler_pos.to_string(),
            "history": self.history,
        });
        if !self.progress.next_codes.is_empty() {
            tensors.push(NamedTensor {
                name: "next_codes".into(),
                shape: vec![
                    self.progress.next_codes.len() / self.net.code.max(1),
                    self.net.code,
                ],
                data: self.progress.next_codes.clone(),
            });
        }
        if let Some(g) = &self.generator {
            tensors.push(NamedTensor {
                name: "gen_weights".into(),
                shape: vec![g.model.weights.len()],
                data: g.model.weights.clone(),
            });
            tensors.push(NamedTensor {
                name: "gen_biases".into(),
                shape: vec![g.model.biases.len()],
                data: g.model.biases.clone(),
            });
            meta["generator_net"] = serde_json::json!(g.net.to_text());
            meta["generator_settings"] = serde_json::to_value(&g.settings).expect("json");
        }
        safetensors_bytes(&tensors, &meta)
    }

    /// Reads what [`AeModel::to_bytes`] wrote (`what` names the file in errors).
    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<Self> {
        let bad = |why: String| Error::Input(format!("{what}: {why}"));
        let (tensors, meta) = crate::io::read_safetensors(bytes).map_err(|e| bad(e.to_string()))?;
        if meta.get("method").and_then(|v| v.as_str()) != Some("rrr autoencode") {
            return Err(bad("not a gradfree autoencoder model".into()));
        }
        let get = |name: &str| -> Result<(Vec<usize>, Vec<f64>)> {
            tensors
                .get(name)
                .cloned()
                .ok_or_else(|| bad(format!("no tensor '{name}'")))
        };
        let text = |key: &str| -> Result<String> {
            meta.get(key)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| bad(format!("metadata lacks '{key}'")))
        };
        let path = std::path::Path::new(what);
        let net = AeNet::parse(&text("net")?, path)?;
        let settings: AeSettings = serde_json::from_value(meta["settings"].clone())
            .map_err(|e| bad(format!("settings: {e}")))?;
        let (weights, biases) = (get("weights")?.1, get("biases")?.1);
        if weights.len() != net.edges.len() || biases.len() != net.nodes() {
            return Err(bad("weights or biases do not fit the net".into()));
        }
        let (shape, values) = get("code_values")?;
        // A checkpoint carries no code values.
        if !values.is_empty() && shape.first() != Some(&net.code) {
            return Err(bad("code values do not fit the code layer".into()));
        }
        let per = shape.get(1).copied().unwrap_or(0);
        let code_lists = values.chunks(per.max(1)).map(<[f64]>::to_vec).collect();
        let generator = match meta.get("generator_net").and_then(|v| v.as_str()) {
            None => None,
            Some(t) => {
                let gnet = crate::methods::rrr::net::Net::parse(t, path)?;
                let gs = serde_json::from_value(meta["generator_settings"].clone())
                    .map_err(|e| bad(format!("generator settings: {e}")))?;
                let (gw, gb) = (get("gen_weights")?.1, get("gen_biases")?.1);
                if gw.len() != gnet.edges.len() || gb.len() != gnet.nodes() {
                    return Err(bad("generator weights do not fit its net".into()));
                }
                Some(Generator {
                    net: gnet,
                    settings: gs,
                    model: Model {
                        weights: gw,
                        biases: gb,
                    },
                })
            }
        };
        // Files from before checkpoints lack the progress and history.
        let epoch = meta
            .get("epoch")
            .and_then(|v| v.as_u64())
            .map_or(settings.epochs, |e| e as usize);
        let sampler_pos = match meta.get("sampler_pos").and_then(|v| v.as_str()) {
            None => 0,
            Some(t) => t
                .parse::<u128>()
                .map_err(|_| bad(format!("sampler_pos '{t}' is not a number")))?,
        };
        let next_codes = match tensors.get("next_codes") {
            None => vec![],
            Some((shape, v)) if shape.get(1) == Some(&net.code) => v.clone(),
            Some(_) => return Err(bad("next_codes do not fit the code layer".into())),
        };
        let history = match meta.get("history") {
            None => vec![],
            Some(h) => {
                serde_json::from_value(h.clone()).map_err(|e| bad(format!("history: {e}")))?
            }
        };
        Ok(AeModel {
            net,
            settings,
            model: Model { weights, biases },
            code_lists,
            generator,
            progress: AeProgress {
                epoch,
                next_codes,
                sampler_pos,
            },
            history,
        })
    }
}
