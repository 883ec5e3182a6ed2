//! SQS endpoints (SPEC section 13): an endpoint whose `url` is a queue's
//! ARN gets each delivery as one `SendMessage` of the same body, with the
//! `webhook-id`, `webhook-timestamp` and `webhook-signature` values as
//! message attributes, so a worker reading the queue verifies it as a
//! receiver of the HTTP request would. A FIFO queue's messages carry the
//! event's owner as their group (ordered per owner) and the event's id as
//! their deduplication id.
//!
//! The AWS SDK's own configuration decides where requests go and with what
//! credentials (`AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL`, profiles, the
//! task role); the region is the queue's own, from its ARN. Only this crate
//! knows aws-sdk-sqs.
//!
//! Errors are classified like HTTP answers: throttling, the service
//! failing and transport failures are retried with the job's backoff (as
//! are refusals an operator can mend, like missing permissions); a queue
//! that does not exist, or a message it will never take, settles the
//! delivery at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::Region;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::MessageAttributeValue;
use domain::{CallbackOutcome, QueueArn};
use tokio::sync::OnceCell;

/// Queue URLs and regional clients kept past this many are dropped and
/// looked up again: a bound on what tenants' endpoints can make us keep.
const MAX_KEPT: usize = 10_000;

/// One delivery as a message.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The signed body, sent as it is (JSON, so valid message text).
    pub body: &'a [u8],
    /// `webhook-id`: the event's id; a FIFO queue's deduplication id.
    pub id: &'a str,
    /// `webhook-timestamp`: Unix seconds, as signed.
    pub timestamp: i64,
    /// `webhook-signature`: one `v1,...` per secret.
    pub signature: &'a str,
    /// A FIFO queue's message group: the event's owner (its tenant when it
    /// has none).
    pub group: &'a str,
}

/// What a send came to: the outcome, and what the service said when it
/// refused (kept in the attempt's history like a receiver's answer).
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub outcome: CallbackOutcome,
    pub answer: Option<String>,
}

/// The processor's SQS client: regional clients and queue URLs, made and
/// looked up on first use.
#[derive(Debug)]
pub struct Queues {
    /// Given by the caller, or loaded from the environment at the first
    /// send (a processor that never sends to a queue never loads it).
    given: Option<SdkConfig>,
    loaded: OnceCell<SdkConfig>,
    clients: Mutex<HashMap<String, Client>>,
    urls: Mutex<HashMap<QueueArn, String>>,
}

impl Default for Queues {
    fn default() -> Self {
        Self::from_environment()
    }
}

impl Queues {
    /// Configured the AWS SDK's standard way, from the environment.
    pub fn from_environment() -> Self {
        Self {
            given: None,
            loaded: OnceCell::new(),
            clients: Mutex::default(),
            urls: Mutex::default(),
        }
    }

    /// Configured by `config` (tests give one pointing at moto).
    pub fn with_config(config: SdkConfig) -> Self {
        Self {
            given: Some(config),
            ..Self::from_environment()
        }
    }

    /// Sends `message` to `queue`, within `timeout` (a send that took
    /// longer may still have been made: it is retried, as an HTTP attempt
    /// that timed out is, and a FIFO queue drops the copy).
    pub async fn send(&self, queue: &QueueArn, message: Message<'_>, timeout: Duration) -> Sent {
        match tokio::time::timeout(timeout, self.send_unbounded(queue, message)).await {
            Ok(sent) => sent,
            Err(_) => Sent {
                outcome: retryable(None, format!("SendMessage timed out after {}", humane(timeout))),
                answer: None,
            },
        }
    }

    async fn send_unbounded(&self, queue: &QueueArn, message: Message<'_>) -> Sent {
        let Ok(body) = std::str::from_utf8(message.body) else {
            return refused("the body is not UTF-8 text, which SQS messages must be");
        };
        let client = self.client(queue.region()).await;
        let url = match self.url(&client, queue).await {
            Ok(url) => url,
            Err(sent) => return sent,
        };
        let text = |value: String| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .expect("data type and value are set")
        };
        let mut request = client
            .send_message()
            .queue_url(&url)
            .message_body(body)
            .message_attributes("webhook-id", text(message.id.to_owned()))
            .message_attributes("webhook-timestamp", text(message.timestamp.to_string()))
            .message_attributes("webhook-signature", text(message.signature.to_owned()))
            .message_attributes("content-type", text("application/json".to_owned()));
        if queue.is_fifo() {
            request = request
                .message_group_id(message.group)
                .message_deduplication_id(message.id);
        }
        match request.send().await {
            Ok(_) => Sent {
                outcome: CallbackOutcome::Delivered { status: 200 },
                answer: None,
            },
            Err(err) => {
                let sent = classify(&err);
                if matches!(sent.outcome, CallbackOutcome::Abandoned { .. }) {
                    self.forget(queue);
                }
                sent
            }
        }
    }

    async fn client(&self, region: &str) -> Client {
        if let Some(client) = self.lock_clients().get(region) {
            return client.clone();
        }
        let config = match &self.given {
            Some(config) => config,
            None => {
                self.loaded
                    .get_or_init(|| aws_config::defaults(BehaviorVersion::latest()).load())
                    .await
            }
        };
        let client = Client::from_conf(
            aws_sdk_sqs::config::Builder::from(config)
                .region(Region::new(region.to_owned()))
                .build(),
        );
        let mut clients = self.lock_clients();
        if clients.len() >= MAX_KEPT {
            clients.clear();
        }
        clients.insert(region.to_owned(), client.clone());
        client
    }

    /// The queue's URL, which SendMessage names it by: asked for once
    /// (GetQueueUrl, with the ARN's account as the queue's owner).
    async fn url(&self, client: &Client, queue: &QueueArn) -> Result<String, Sent> {
        if let Some(url) = self.lock_urls().get(queue) {
            return Ok(url.clone());
        }
        let answer = client
            .get_queue_url()
            .queue_name(queue.name())
            .queue_owner_aws_account_id(queue.account())
            .send()
            .await
            .map_err(|err| classify(&err))?;
        let Some(url) = answer.queue_url else {
            return Err(Sent {
                outcome: retryable(None, "GetQueueUrl answered without a queue URL".to_owned()),
                answer: None,
            });
        };
        let mut urls = self.lock_urls();
        if urls.len() >= MAX_KEPT {
            urls.clear();
        }
        urls.insert(queue.clone(), url.clone());
        Ok(url)
    }

    fn forget(&self, queue: &QueueArn) {
        self.lock_urls().remove(queue);
    }

    fn lock_clients(&self) -> std::sync::MutexGuard<'_, HashMap<String, Client>> {
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_urls(&self) -> std::sync::MutexGuard<'_, HashMap<QueueArn, String>> {
        self.urls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn retryable(status: Option<u16>, error: String) -> CallbackOutcome {
    CallbackOutcome::Retryable {
        status,
        error,
        retry_after: None,
    }
}

fn refused(reason: &str) -> Sent {
    Sent {
        outcome: CallbackOutcome::Abandoned {
            reason: reason.to_owned(),
        },
        answer: None,
    }
}

/// Error codes that mean the queue is not there (the query protocol's and
/// the JSON protocol's names).
const MISSING: &[&str] = &["AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"];
/// Codes that mean this message will never be taken, however often sent.
const UNSENDABLE: &[&str] = &[
    "InvalidMessageContents",
    "InvalidParameterValue",
    "MessageTooLong",
];

/// An SQS failure as a delivery outcome. The text says what happened
/// without anything from the request (no credentials are in it anyway).
fn classify<E>(err: &SdkError<E, HttpResponse>) -> Sent
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("unknown");
            let message = service.err().message().unwrap_or("").to_owned();
            let status = service.raw().status().as_u16();
            let detail = if message.is_empty() {
                code.to_owned()
            } else {
                format!("{code}: {message}")
            };
            if MISSING.contains(&code) {
                Sent {
                    outcome: CallbackOutcome::Abandoned {
                        reason: "queueMissing".to_owned(),
                    },
                    answer: Some(detail),
                }
            } else if UNSENDABLE.contains(&code) {
                Sent {
                    outcome: CallbackOutcome::Abandoned {
                        reason: "queueRefusedMessage".to_owned(),
                    },
                    answer: Some(detail),
                }
            } else {
                // Throttling, the service failing, and refusals an operator
                // can mend (permissions, a KMS key): tried again later.
                Sent {
                    outcome: retryable(Some(status), format!("SQS {detail}")),
                    answer: Some(detail),
                }
            }
        }
        SdkError::TimeoutError(_) => Sent {
            outcome: retryable(None, "SQS did not answer in time".to_owned()),
            answer: None,
        },
        SdkError::DispatchFailure(failure) => Sent {
            outcome: retryable(
                None,
                if failure.is_timeout() {
                    "SQS did not answer in time".to_owned()
                } else {
                    "SQS could not be reached".to_owned()
                },
            ),
            answer: None,
        },
        other => Sent {
            outcome: retryable(None, format!("SQS: {}", error_chain(other))),
            answer: None,
        },
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(next) = source {
        text.push_str(": ");
        text.push_str(&next.to_string());
        source = next.source();
    }
    text
}

fn humane(duration: Duration) -> String {
    if duration.as_millis().is_multiple_of(1000) {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::config::Credentials;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A server on loopback answering every request with `answer` (or
    /// never, when `None`), and the queues configured to reach it.
    async fn queues_at(answer: Option<&'static str>) -> Queues {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let Some(answer) = answer else { continue };
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .load()
            .await;
        Queues::with_config(config)
    }

    fn message() -> Message<'static> {
        Message {
            body: br#"{"type":"order.placed"}"#,
            id: "01J0000000000000000000000",
            timestamp: 1_700_000_000,
            signature: "v1,abc",
            group: "company-42",
        }
    }

    fn queue() -> QueueArn {
        QueueArn::parse("arn:aws:sqs:us-east-1:123456789012:orders").expect("arn")
    }

    #[tokio::test]
    async fn a_queue_that_never_answers_is_retried_after_the_timeout() {
        let queues = queues_at(None).await;
        let started = std::time::Instant::now();
        let sent = queues.send(&queue(), message(), Duration::from_millis(300)).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        let CallbackOutcome::Retryable { error, .. } = &sent.outcome else {
            panic!("{sent:?}");
        };
        assert!(error.contains("timed out after 300 ms"), "{error}");
    }

    const MISSING: &str = "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.0\r\n\
        x-amzn-query-error: AWS.SimpleQueueService.NonExistentQueue;Sender\r\ncontent-length: 86\r\n\r\n\
        {\"__type\":\"com.amazonaws.sqs#QueueDoesNotExist\",\"message\":\"The queue does not exist.\"}";
    const THROTTLED: &str = "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.0\r\n\
        content-length: 78\r\n\r\n\
        {\"__type\":\"com.amazonaws.sqs#RequestThrottled\",\"message\":\"Slow down, please.\"}";
    const FAILING: &str = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";

    #[tokio::test]
    async fn errors_are_classified_like_http_answers() {
        let sent = queues_at(Some(MISSING))
            .await
            .send(&queue(), message(), Duration::from_secs(5))
            .await;
        assert_eq!(
            sent.outcome,
            CallbackOutcome::Abandoned {
                reason: "queueMissing".to_owned()
            },
            "{sent:?}"
        );
        for answer in [THROTTLED, FAILING] {
            let sent = queues_at(Some(answer))
                .await
                .send(&queue(), message(), Duration::from_secs(5))
                .await;
            assert!(
                matches!(sent.outcome, CallbackOutcome::Retryable { .. }),
                "{answer}: {sent:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_body_that_is_not_text_is_refused_without_a_call() {
        let queues = queues_at(None).await;
        let sent = queues
            .send(
                &queue(),
                Message {
                    body: &[0xff, 0xfe],
                    ..message()
                },
                Duration::from_secs(5),
            )
            .await;
        assert!(
            matches!(sent.outcome, CallbackOutcome::Abandoned { .. }),
            "{sent:?}"
        );
    }
}
