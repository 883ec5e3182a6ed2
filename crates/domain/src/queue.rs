//! An endpoint that is an SQS queue, named by its ARN as EventBridge
//! targets are (`arn:aws:sqs:REGION:ACCOUNT:QUEUE`, SPEC section 13). The
//! endpoint's `url` holds the ARN as given; this reads it.

use std::fmt;

use url::Url;

/// Queue names: 1-80 of `[A-Za-z0-9_-]`, a FIFO queue's ending in `.fifo`
/// (counted in the 80).
const MAX_QUEUE_NAME: usize = 80;

/// An SQS queue's ARN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueArn {
    partition: String,
    region: String,
    account: String,
    name: String,
}

/// Why a text is not an SQS queue's ARN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidQueueArn(&'static str);

impl QueueArn {
    /// Whether `text` is meant as an ARN (it starts `arn:`), whatever its
    /// validity: such a text is read as a queue, not as a URL.
    pub fn is_arn(text: &str) -> bool {
        text.get(..4)
            .is_some_and(|head| head.eq_ignore_ascii_case("arn:"))
    }

    pub fn parse(text: &str) -> Result<Self, InvalidQueueArn> {
        let parts: Vec<&str> = text.split(':').collect();
        let [arn, partition, service, region, account, name] = parts[..] else {
            return Err(InvalidQueueArn("must look like arn:aws:sqs:REGION:ACCOUNT:QUEUE"));
        };
        if arn != "arn" || !matches!(partition, "aws" | "aws-cn" | "aws-us-gov") {
            return Err(InvalidQueueArn(
                "must start arn:aws: (or arn:aws-cn:, arn:aws-us-gov:)",
            ));
        }
        if service != "sqs" {
            return Err(InvalidQueueArn("must name an SQS queue (arn:aws:sqs:...)"));
        }
        let region_ok = !region.is_empty()
            && region.len() <= 32
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && region.bytes().any(|b| b.is_ascii_digit());
        if !region_ok {
            return Err(InvalidQueueArn("must name a region, such as us-east-1"));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidQueueArn("must name a 12-digit account id"));
        }
        let stem = name.strip_suffix(".fifo").unwrap_or(name);
        if name.len() > MAX_QUEUE_NAME
            || stem.is_empty()
            || !stem
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(InvalidQueueArn(
                "must end in a queue name: 1-80 of A-Z, a-z, 0-9, - and _ (a FIFO queue's ending .fifo)",
            ));
        }
        Ok(Self {
            partition: partition.to_owned(),
            region: region.to_owned(),
            account: account.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The queue an endpoint's `url` names, if it names one.
    pub fn of_url(url: &Url) -> Option<Self> {
        (url.scheme() == "arn")
            .then(|| Self::parse(url.as_str()).ok())
            .flatten()
    }

    /// The ARN as a URL, which is how an endpoint keeps it.
    pub fn to_url(&self) -> Url {
        Url::parse(&self.to_string()).expect("a valid ARN is a valid URL (scheme arn)")
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A FIFO queue (its name ends `.fifo`): messages carry a group id and
    /// a deduplication id.
    pub fn is_fifo(&self) -> bool {
        self.name.ends_with(".fifo")
    }
}

impl fmt::Display for QueueArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:sqs:{}:{}:{}",
            self.partition, self.region, self.account, self.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_standard_and_fifo_queues() {
        let arn = QueueArn::parse("arn:aws:sqs:eu-west-1:123456789012:orders").expect("arn");
        assert_eq!(
            (arn.region(), arn.account(), arn.name()),
            ("eu-west-1", "123456789012", "orders")
        );
        assert!(!arn.is_fifo());
        assert_eq!(arn.to_string(), "arn:aws:sqs:eu-west-1:123456789012:orders");
        let fifo = QueueArn::parse("arn:aws:sqs:us-east-1:123456789012:orders_v2.fifo").expect("fifo");
        assert!(fifo.is_fifo());
        let url = fifo.to_url();
        assert_eq!(url.as_str(), "arn:aws:sqs:us-east-1:123456789012:orders_v2.fifo");
        assert_eq!(QueueArn::of_url(&url), Some(fifo));
        assert_eq!(
            QueueArn::of_url(&Url::parse("https://example.com/hook").expect("url")),
            None
        );
    }

    #[test]
    fn refuses_what_is_not_a_queue_arn() {
        for bad in [
            "arn:aws:sqs:us-east-1:123456789012",
            "arn:aws:sns:us-east-1:123456789012:topic",
            "arn:aws:sqs::123456789012:q",
            "arn:aws:sqs:us-east-1:1234:q",
            "arn:aws:sqs:us-east-1:123456789012:",
            "arn:aws:sqs:us-east-1:123456789012:.fifo",
            "arn:aws:sqs:us-east-1:123456789012:has space",
            "arn:aws:sqs:us-east-1:123456789012:a:b",
            "arn:other:sqs:us-east-1:123456789012:q",
            "arn:aws:sqs:US-EAST-1:123456789012:q",
        ] {
            assert!(QueueArn::parse(bad).is_err(), "{bad}");
        }
        let long = format!("arn:aws:sqs:us-east-1:123456789012:{}", "q".repeat(81));
        assert!(QueueArn::parse(&long).is_err());
        assert!(QueueArn::is_arn("ARN:aws:sqs"));
        assert!(!QueueArn::is_arn("https://x"));
    }
}
