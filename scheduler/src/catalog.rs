//! The service catalog: every service's input schema, price and candidate backends,
//! and the model lists with each provider's own model id. Loaded from JSON; the
//! repository's `catalog.json` is compiled in as the default.

use crate::provider::Provider;
use gpubridge_protocol::Micros;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The catalog shipped with this build.
pub const DEFAULT_CATALOG_JSON: &str = include_str!("../catalog.json");

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog is not valid JSON for its format: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("service {service}: input schema does not compile: {reason}")]
    Schema { service: String, reason: String },
    #[error("service {service}: {reason}")]
    Invalid { service: String, reason: String },
}

/// What a backend is asked to do; decides the request an adapter sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Chat,
    Vision,
    Embedding,
    Rerank,
    Image,
    Transcription,
    Speech,
    Prediction,
    Echo,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Llm,
    Image,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProviderModel {
    pub id: String,
    pub cost_per_second_micros: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelSpec {
    pub id: String,
    pub kind: ModelKind,
    pub name: String,
    pub providers: HashMap<Provider, ProviderModel>,
}

/// One way to serve a service: a provider, its model id and how our input maps onto its.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackendSpec {
    pub provider: Provider,
    pub model: String,
    pub cost_per_second_micros: u64,
    /// Renames of our input fields to the provider model's own names.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub input_map: HashMap<String, String>,
    /// Provider input fields set unless the request sets them.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub defaults: Map<String, Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub key: String,
    pub name: String,
    pub category: String,
    pub description: String,
    pub from_micros: u64,
    pub price_per_second_micros: u64,
    pub default_seconds: f64,
    /// Deadline of a job of this service, from acceptance to result.
    pub max_seconds: u64,
    pub operation: Operation,
    pub input_schema: Value,
    #[serde(default)]
    pub backends: Vec<BackendSpec>,
    /// Backends come from every provider of every model of this kind.
    #[serde(default)]
    pub models: Option<ModelKind>,
    #[serde(default)]
    pub route: Option<String>,
}

impl ServiceSpec {
    pub fn from_price(&self) -> Micros {
        Micros(self.from_micros)
    }
    pub fn price_per_second(&self) -> Micros {
        Micros(self.price_per_second_micros)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DefaultModels {
    pub llm: String,
    pub image: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct CatalogFile {
    version: u32,
    default_models: DefaultModels,
    #[serde(default)]
    tts_voices: Vec<String>,
    models: Vec<ModelSpec>,
    services: Vec<ServiceSpec>,
}

/// The loaded, checked catalog with compiled input validators.
pub struct Catalog {
    file: CatalogFile,
    services: HashMap<String, usize>,
    models: HashMap<String, usize>,
    validators: Vec<jsonschema::Validator>,
}

/// One problem with a request's input, as the error envelope's `details` lists it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct InputProblem {
    pub path: String,
    pub message: String,
}

/// Most problems reported for one input: enough to fix it, bounded so a huge bad
/// input cannot make a huge error.
const MAX_PROBLEMS: usize = 20;

impl Catalog {
    pub fn builtin() -> Result<Catalog, CatalogError> {
        Catalog::from_json(DEFAULT_CATALOG_JSON)
    }

    pub fn from_json(text: &str) -> Result<Catalog, CatalogError> {
        let file: CatalogFile = serde_json::from_str(text)?;
        let mut validators = Vec::with_capacity(file.services.len());
        let mut services = HashMap::new();
        for (index, spec) in file.services.iter().enumerate() {
            let invalid = |reason: &str| CatalogError::Invalid {
                service: spec.key.clone(),
                reason: reason.to_string(),
            };
            if services.insert(spec.key.clone(), index).is_some() {
                return Err(invalid("listed twice"));
            }
            if spec.backends.is_empty() && spec.models.is_none() {
                return Err(invalid("has neither backends nor a model list"));
            }
            if !(spec.default_seconds.is_finite() && spec.default_seconds > 0.0) {
                return Err(invalid("default_seconds must be positive"));
            }
            if spec.max_seconds == 0 {
                return Err(invalid("max_seconds must be positive"));
            }
            let validator = jsonschema::validator_for(&spec.input_schema).map_err(|e| {
                CatalogError::Schema {
                    service: spec.key.clone(),
                    reason: e.to_string(),
                }
            })?;
            validators.push(validator);
        }
        let models = file
            .models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.clone(), i))
            .collect::<HashMap<_, _>>();
        for default in [&file.default_models.llm, &file.default_models.image] {
            if !models.contains_key(default) {
                return Err(CatalogError::Invalid {
                    service: "default_models".into(),
                    reason: format!("default model {default} is not in the model list"),
                });
            }
        }
        Ok(Catalog {
            file,
            services,
            models,
            validators,
        })
    }

    pub fn version(&self) -> u32 {
        self.file.version
    }

    pub fn service(&self, key: &str) -> Option<&ServiceSpec> {
        self.services.get(key).map(|&i| &self.file.services[i])
    }

    pub fn services(&self) -> &[ServiceSpec] {
        &self.file.services
    }

    pub fn service_keys(&self) -> Vec<String> {
        self.file.services.iter().map(|s| s.key.clone()).collect()
    }

    pub fn model(&self, id: &str) -> Option<&ModelSpec> {
        self.models.get(id).map(|&i| &self.file.models[i])
    }

    pub fn models(&self) -> &[ModelSpec] {
        &self.file.models
    }

    pub fn models_of(&self, kind: ModelKind) -> impl Iterator<Item = &ModelSpec> {
        self.file.models.iter().filter(move |m| m.kind == kind)
    }

    pub fn default_model(&self, kind: ModelKind) -> &str {
        match kind {
            ModelKind::Llm => &self.file.default_models.llm,
            ModelKind::Image => &self.file.default_models.image,
        }
    }

    pub fn tts_voices(&self) -> &[String] {
        &self.file.tts_voices
    }

    /// Checks `input` against the service's schema; `Err` lists what is wrong where.
    pub fn validate(&self, service: &str, input: &Value) -> Result<(), Vec<InputProblem>> {
        let Some(&index) = self.services.get(service) else {
            return Err(vec![InputProblem {
                path: "/service".into(),
                message: format!("unknown service {service:?}"),
            }]);
        };
        let problems: Vec<InputProblem> = self.validators[index]
            .iter_errors(input)
            .take(MAX_PROBLEMS)
            .map(|error| {
                let path = error.instance_path().as_str();
                InputProblem {
                    path: format!("/input{path}"),
                    message: error.to_string(),
                }
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_catalog_has_every_spec_service() {
        let catalog = Catalog::builtin().expect("shipped catalog loads");
        let spec_keys = [
            "llm-4090",
            "embedding-l4",
            "llava-4090",
            "caption",
            "clip",
            "rerank",
            "image-4090",
            "video",
            "inpaint",
            "controlnet",
            "img2img",
            "image-variation",
            "photomaker",
            "sticker",
            "ad-inpaint",
            "animate",
            "video-enhance",
            "whisper-l4",
            "whisperx",
            "tts-l4",
            "bark",
            "musicgen-l4",
            "voice-clone",
            "rembg-l4",
            "upscale-l4",
            "face-restore",
            "ocr",
            "segmentation",
            "pdf-parse",
            "nsfw-detect",
        ];
        for key in spec_keys {
            assert!(catalog.service(key).is_some(), "missing {key}");
        }
        assert_eq!(
            catalog.services().len(),
            spec_keys.len() + 1,
            "30 services plus echo"
        );
        assert_eq!(catalog.service("echo").unwrap().from_micros, 0);
    }

    #[test]
    fn spec_prices_are_honoured() {
        let catalog = Catalog::builtin().unwrap();
        let from = |k: &str| catalog.service(k).unwrap().from_price();
        assert_eq!(from("llm-4090"), Micros(3_000));
        assert_eq!(from("video"), Micros(300_000));
        assert_eq!(from("rerank"), Micros(1_000));
        assert_eq!(from("nsfw-detect"), Micros(5_000));
        assert_eq!(
            catalog.service("llm-4090").unwrap().price_per_second(),
            Micros(2_400)
        );
    }

    #[test]
    fn validation_reports_paths() {
        let catalog = Catalog::builtin().unwrap();
        assert!(catalog
            .validate("llm-4090", &json!({"prompt": "hi"}))
            .is_ok());
        let problems = catalog
            .validate("llm-4090", &json!({"prompt": "hi", "max_tokens": "many"}))
            .unwrap_err();
        assert_eq!(problems[0].path, "/input/max_tokens");
        let missing = catalog
            .validate("rerank", &json!({"query": "q"}))
            .unwrap_err();
        assert!(missing[0].message.contains("documents"), "{missing:?}");
        assert!(catalog
            .validate("ocr", &json!({"image_url": "ftp://x/y"}))
            .is_err());
        assert!(catalog.validate("nope", &json!({})).is_err());
    }

    #[test]
    fn broken_catalogs_are_refused() {
        assert!(Catalog::from_json("{").is_err());
        let mut file: Value = serde_json::from_str(DEFAULT_CATALOG_JSON).unwrap();
        file["services"][0]["input_schema"] = json!({"type": 12});
        assert!(matches!(
            Catalog::from_json(&file.to_string()),
            Err(CatalogError::Schema { .. })
        ));
    }
}
