//! hookline's domain: what a job is, how it moves through its lifecycle, how
//! long to wait before the next attempt, what the callback carries, and how
//! it is signed ([`signing`]).
//!
//! Nothing here does I/O. Time and randomness come in as arguments so the
//! lifecycle is tested without sleeping.

mod api_key;
mod attempt;
mod blob;
mod callback;
mod clock;
mod endpoint;
mod event;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
mod id;
mod job;
mod metadata;
mod outbound;
mod queue;
pub mod record;
mod retry;
pub mod signing;
mod source;

pub use api_key::{ApiKey, KeyHash};
pub use attempt::{
    Attempt, KEPT_HEADERS, MAX_ATTEMPT_BODY, MAX_ATTEMPTS_KEPT, MAX_HEADER_VALUE, kept_headers, truncate_body,
};
pub use blob::{BlobRef, InvalidSha256, parse_sha256};
pub use callback::{CallbackBody, CallbackResult, DeliveryBody, EventBody};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use endpoint::{
    DisabledReason, Endpoint, EndpointHeaders, EndpointStatus, EventTypeDef, InvalidHeader, InvalidOwner,
    MAX_ENDPOINT_HEADERS, Owner, Subscription,
};
pub use event::{DeliveryRef, Event, EventPayload, NewEvent, SettledResult};
pub use id::{
    EndpointId, EventId, EventType, InvalidEventType, InvalidTenant, JobId, ParseIdError, ParseJobIdError,
    ReceiverTag, SourceId, SourceRequestId, TenantId,
};
pub use job::{
    CallbackOutcome, DeliveryState, Dropped, FetchOutcome, Job, JobStatus, NewJob, Payload, ProviderState,
    ProviderStatus, Target, Tried,
};
pub use metadata::{Metadata, MetadataError, RawJson};
pub use outbound::{
    Credential, EndpointAuth, HIDDEN, InvalidAuth, MAX_CREDENTIAL, MAX_ENDPOINT_TIMEOUT,
    MIN_ENDPOINT_TIMEOUT, OAuth2Grant,
};
pub use queue::{InvalidQueueArn, QueueArn};
pub use retry::{Jitter, RetryPolicy, RetrySchedule};
pub use signing::{ParseSecretError, SigningSecret, TenantSecrets, VerifyError};
pub use source::{
    Challenge, DEDUP_WINDOW, Encoding, HmacAlgorithm, InvalidSource, Item, MAX_CHALLENGE, MAX_SOURCE_NAME,
    MAX_SPLIT_ITEMS, Pointer, Refused, STRIPE_TOLERANCE, Source, SourceRequest, Split, Unsplittable, Verdict,
    Verify,
};
