//! The job record: what was asked, where it ran, what came back, what it cost.
//! A versioned [`Record`]; input and output are kept as JSON text inside it.

use gpubridge_protocol::{AccountId, JobId, JobStatus, Micros, Priority};
use gpubridge_store::{payload_of, DecodeError, Record};
use serde::{Deserialize, Serialize};

/// How a job is paid for from an account's credits: the reservation made when it
/// was accepted, the terms it was quoted, and how it was settled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobBilling {
    pub account: AccountId,
    pub reserved: Micros,
    /// The quoted "from" price, after the account's discount.
    pub from_price: Micros,
    /// The quoted price per second, before the account's discount.
    pub price_per_second: Micros,
    pub discount_bps: u32,
    /// UTC day of the reservation (days since the epoch).
    pub job_day: u32,
    /// Set with the terminal state, in the same write.
    pub settled: Option<Settlement>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    pub charged: Micros,
    pub refunded: Micros,
}

/// Which front door a job came through; decides nothing but is shown to operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Run,
    Inference,
    /// The OpenAI-compatible routes under `/v1`.
    Openai,
    /// A tool call on `/mcp`.
    Mcp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub backend: String,
    pub started_ms: u64,
    pub duration_ms: u64,
    /// `None` for the attempt that succeeded.
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    pub service: String,
    pub model: Option<String>,
    pub priority: Priority,
    pub origin: Origin,
    pub status: JobStatus,
    /// JSON text of the validated input.
    pub input: String,
    /// JSON text of the output, once completed.
    pub output: Option<String>,
    pub error: Option<String>,
    pub attempts: Vec<Attempt>,
    /// The backend that produced the output.
    pub backend: Option<String>,
    pub created_ms: u64,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub deadline_ms: u64,
    pub estimated_cost: Micros,
    pub estimated_seconds: f64,
    /// Time the successful attempt spent executing, in microseconds.
    pub execution_us: Option<u64>,
    pub webhook_url: Option<String>,
    /// Who may read the full output; `None` for jobs open to any holder of the id.
    /// Stored as its `acct_…` text, the layout of the first release.
    #[serde(with = "owner_text")]
    pub owner: Option<AccountId>,
    /// Times the daemon restarted while this job was unfinished.
    pub recoveries: u32,
    /// Credits reserved for it; `None` when nobody pays (free access, x402).
    pub billing: Option<JobBilling>,
    /// The x402 payment that paid for it. Records of version 1 end before it
    /// and read as `None`.
    pub payment: Option<JobPayment>,
    /// Set when the job was stopped because its client left or its owner
    /// cancelled it. Records of versions 1 and 2 end before it.
    pub stopped: Option<Stopped>,
    /// The latest progress its backend reported. Records of versions 1 to 3
    /// end before it.
    pub progress: Option<Progress>,
    /// The backend chosen for the latest attempt and what it was expected to
    /// cost. Records of versions 1 to 3 end before it.
    pub routing: Option<Routing>,
    /// When retention removed its input and output (Unix ms), leaving the
    /// summary its owner's history shows. Records of versions 1 to 4 end before it.
    pub expired_ms: Option<u64>,
}

/// How far a running job is, as its backend (a node agent) says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// 0 to 1000.
    pub permille: u16,
    pub message: String,
    pub at_ms: u64,
}

/// Why a backend was chosen: its price per second and the duration learned
/// for it, whose product `cheap` routing minimises.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Routing {
    pub backend: String,
    /// What the backend costs per second of execution.
    pub cost_per_second: Micros,
    pub expected_ms: f64,
    pub expected_cost: Micros,
}

impl Routing {
    /// What the backend cost for the time the job ran there.
    pub fn actual_cost(&self, execution_us: u64) -> Micros {
        Micros::per_second_times(self.cost_per_second, execution_us as f64 / 1e6)
    }
}

/// A job stopped before it finished because nobody wanted its output any more.
/// It is failed, and pays for the time it ran only if part of its output was
/// delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopped {
    pub reason: String,
    /// Output chunks that reached the client before it left.
    pub chunks_delivered: u32,
}

/// How an x402 job was paid. Each proof pays for one job (and, if that job
/// fails everywhere, one retry of the same service).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobPayment {
    /// The proof's key in the payments table.
    pub proof: String,
    /// `tx-hash` (a transfer already made) or `eip3009` (an authorization we settled).
    pub scheme: String,
    /// Who paid, and how much, in the asset's atomic units.
    pub payer: String,
    pub amount_atomic: String,
    /// The transaction that moved the money.
    pub transaction: String,
    /// This job is the proof's retry.
    pub retry: bool,
    /// Set when the job failed: until then the proof pays for one retry.
    pub retry_until_ms: Option<u64>,
}

/// `Option<AccountId>` stored as `Option<String>`.
mod owner_text {
    use gpubridge_protocol::AccountId;
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(owner: &Option<AccountId>, s: S) -> Result<S::Ok, S::Error> {
        owner.map(|id| id.to_string()).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<AccountId>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| text.parse().map_err(D::Error::custom))
            .transpose()
    }
}

impl Record for JobRecord {
    const KIND: &'static str = "job";
    const VERSION: u8 = 5;

    /// Version 1 ends before `payment`, version 2 before `stopped`, version 3
    /// before `progress` and `routing`, version 4 before `expired_ms`: the same
    /// bytes and a `None` for each missing field.
    fn upgrade(version: u8, payload: &[u8]) -> Result<Self, DecodeError> {
        match version {
            1..=4 => {
                // Version 4 added two fields at once.
                let missing = if version == 4 { 1 } else { 6 - version };
                let mut bytes = payload.to_vec();
                bytes.extend(std::iter::repeat_n(0, usize::from(missing)));
                payload_of(Self::KIND, &bytes)
            }
            _ => Err(DecodeError::UnknownVersion {
                kind: Self::KIND,
                version,
            }),
        }
    }
}

impl JobRecord {
    pub fn execution_seconds(&self) -> Option<f64> {
        self.execution_us.map(|us| us as f64 / 1e6)
    }
}

/// A JSON value as the text a record keeps. Straight into a buffer: `Display`
/// goes through a formatter per token, twice the cost for a job's input and
/// output. A `Value` always serializes; the fallback is for form's sake.
pub fn json_text(value: &serde_json::Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| value.to_string())
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A pending `echo` job (tests).
#[cfg(any(test, feature = "test-support"))]
pub fn sample(id: &str) -> JobRecord {
    JobRecord {
        id: JobId::parse(id).unwrap_or_else(JobId::random),
        service: "echo".into(),
        model: None,
        priority: Priority::Fast,
        origin: Origin::Run,
        status: JobStatus::Pending,
        input: r#"{"a":1}"#.into(),
        output: None,
        error: None,
        attempts: vec![],
        backend: None,
        created_ms: 1,
        started_ms: None,
        finished_ms: None,
        deadline_ms: u64::MAX,
        estimated_cost: Micros(3000),
        estimated_seconds: 1.5,
        execution_us: None,
        webhook_url: None,
        owner: None,
        recoveries: 0,
        billing: None,
        payment: None,
        stopped: None,
        progress: None,
        routing: None,
        expired_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use gpubridge_store::{decode, encode};

    #[test]
    fn round_trips_as_a_versioned_record() {
        let mut record = sample("j1");
        record.attempts.push(Attempt {
            backend: "groq:m".into(),
            started_ms: 5,
            duration_ms: 7,
            error: Some("HTTP 500".into()),
        });
        record.output = Some(r#"{"text":"hi"}"#.into());
        record.owner = Some(AccountId([3; 16]));
        assert_eq!(decode::<JobRecord>(&encode(&record)).unwrap(), record);
        assert!(decode::<JobRecord>(b"\x02\xff\xff").is_err());
        // Records written before expiry, progress and routing, stops and
        // payments existed read without them.
        let mut v4 = encode(&record);
        v4[0] = 4;
        v4.pop();
        assert_eq!(decode::<JobRecord>(&v4).unwrap(), record);
        let mut v3 = v4;
        v3[0] = 3;
        v3.truncate(v3.len() - 2);
        assert_eq!(decode::<JobRecord>(&v3).unwrap(), record);
        let mut v2 = v3;
        v2[0] = 2;
        v2.pop();
        assert_eq!(decode::<JobRecord>(&v2).unwrap(), record);
        v2[0] = 1;
        v2.pop();
        assert_eq!(decode::<JobRecord>(&v2).unwrap(), record);
    }
}
