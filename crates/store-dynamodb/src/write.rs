//! Conditional writes, one way for all of them: [`DynamoStore::write`]
//! sends a `PutItem`, `UpdateItem`, `DeleteItem` or `TransactWriteItems` with its
//! attempts recorded ([`WriteAttempts`]), asks for the capacity it consumed
//! (and records it) and, for a failed condition, for the item as it was.
//! A failed condition is an outcome, [`Written::Refused`], that its caller
//! decides on with the item it found: its own effect (an attempt whose
//! answer was lost) or someone else's. Every other failure is an error,
//! classified the same for every write: too large, indeterminate when an
//! attempt may have been applied, otherwise unavailable.

use std::future::Future;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::delete_item::builders::DeleteItemFluentBuilder;
use aws_sdk_dynamodb::operation::delete_item::{DeleteItemError, DeleteItemOutput};
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::operation::transact_write_items::builders::TransactWriteItemsFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::{TransactWriteItemsError, TransactWriteItemsOutput};
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::{
    CancellationReason, ConsumedCapacity, ReturnConsumedCapacity, ReturnValuesOnConditionCheckFailure,
};
use store::StoreError;
use telemetry::Access;

use crate::DynamoStore;
use crate::attempts::{WriteAttempts, write_failed};
use crate::codec::Item;
use crate::schema::PK;

/// What a conditional write came to, when DynamoDB answered it.
#[derive(Debug)]
pub(crate) enum Written<O, R> {
    /// Applied: the operation's output.
    Applied(O),
    /// Refused by its condition (a transaction: cancelled). `found` is
    /// what DynamoDB found instead; `maybe_applied` says whether an
    /// attempt of this call may have been applied all the same, and so
    /// whether what was found may be the call's own effect.
    Refused { found: R, maybe_applied: bool },
}

/// A DynamoDB write request that [`DynamoStore::write`] can send.
pub(crate) trait ConditionalWrite: Send {
    type Output: Send;
    type Error: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static;
    /// What a refusal carries: the item found (if there was one), or a
    /// transaction's reasons, one per item.
    type Refusal;

    /// Sends the request with `attempts` watching, asking for the capacity
    /// consumed and, on a failed condition, for the item as it was.
    fn send(
        self,
        attempts: WriteAttempts,
    ) -> impl Future<Output = Result<Self::Output, SdkError<Self::Error, HttpResponse>>> + Send;

    fn consumed(output: &Self::Output) -> &[ConsumedCapacity];

    /// The refusal, if the request failed its condition.
    fn refusal(err: &SdkError<Self::Error, HttpResponse>) -> Option<Self::Refusal>;
}

impl ConditionalWrite for PutItemFluentBuilder {
    type Output = PutItemOutput;
    type Error = PutItemError;
    type Refusal = Option<Item>;

    fn send(
        self,
        attempts: WriteAttempts,
    ) -> impl Future<Output = Result<PutItemOutput, SdkError<PutItemError, HttpResponse>>> + Send {
        self.return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .customize()
            .interceptor(attempts)
            .send()
    }

    fn consumed(output: &PutItemOutput) -> &[ConsumedCapacity] {
        output
            .consumed_capacity()
            .map(std::slice::from_ref)
            .unwrap_or_default()
    }

    fn refusal(err: &SdkError<PutItemError, HttpResponse>) -> Option<Option<Item>> {
        match err.as_service_error()? {
            PutItemError::ConditionalCheckFailedException(failed) => Some(failed.item().cloned()),
            _ => None,
        }
    }
}

impl ConditionalWrite for UpdateItemFluentBuilder {
    type Output = UpdateItemOutput;
    type Error = UpdateItemError;
    type Refusal = Option<Item>;

    fn send(
        self,
        attempts: WriteAttempts,
    ) -> impl Future<Output = Result<UpdateItemOutput, SdkError<UpdateItemError, HttpResponse>>> + Send {
        self.return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .customize()
            .interceptor(attempts)
            .send()
    }

    fn consumed(output: &UpdateItemOutput) -> &[ConsumedCapacity] {
        output
            .consumed_capacity()
            .map(std::slice::from_ref)
            .unwrap_or_default()
    }

    fn refusal(err: &SdkError<UpdateItemError, HttpResponse>) -> Option<Option<Item>> {
        match err.as_service_error()? {
            UpdateItemError::ConditionalCheckFailedException(failed) => Some(failed.item().cloned()),
            _ => None,
        }
    }
}

impl ConditionalWrite for DeleteItemFluentBuilder {
    type Output = DeleteItemOutput;
    type Error = DeleteItemError;
    type Refusal = Option<Item>;

    fn send(
        self,
        attempts: WriteAttempts,
    ) -> impl Future<Output = Result<DeleteItemOutput, SdkError<DeleteItemError, HttpResponse>>> + Send {
        self.return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .customize()
            .interceptor(attempts)
            .send()
    }

    fn consumed(output: &DeleteItemOutput) -> &[ConsumedCapacity] {
        output
            .consumed_capacity()
            .map(std::slice::from_ref)
            .unwrap_or_default()
    }

    fn refusal(err: &SdkError<DeleteItemError, HttpResponse>) -> Option<Option<Item>> {
        match err.as_service_error()? {
            DeleteItemError::ConditionalCheckFailedException(failed) => Some(failed.item().cloned()),
            _ => None,
        }
    }
}

/// A transaction asks for the items its conditions failed on per item
/// (`Put::return_values_on_condition_check_failure`), and a refusal is its
/// cancellation: a condition failed, or another transaction was writing
/// the same items (`TransactionConflict`).
impl ConditionalWrite for TransactWriteItemsFluentBuilder {
    type Output = TransactWriteItemsOutput;
    type Error = TransactWriteItemsError;
    type Refusal = Vec<CancellationReason>;

    fn send(
        self,
        attempts: WriteAttempts,
    ) -> impl Future<
        Output = Result<TransactWriteItemsOutput, SdkError<TransactWriteItemsError, HttpResponse>>,
    > + Send {
        self.return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .customize()
            .interceptor(attempts)
            .send()
    }

    fn consumed(output: &TransactWriteItemsOutput) -> &[ConsumedCapacity] {
        output.consumed_capacity()
    }

    fn refusal(err: &SdkError<TransactWriteItemsError, HttpResponse>) -> Option<Vec<CancellationReason>> {
        match err.as_service_error()? {
            TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                Some(cancelled.cancellation_reasons().to_vec())
            }
            _ => None,
        }
    }
}

impl DynamoStore {
    /// Sends one conditional write and records what it cost. `attempts`
    /// is the record of the call's attempts: a fresh one per call, shared
    /// by every send when a call sends the same write again.
    pub(crate) async fn write<W: ConditionalWrite>(
        &self,
        operation: &'static str,
        request: W,
        attempts: &WriteAttempts,
    ) -> Result<Written<W::Output, W::Refusal>, StoreError> {
        match request.send(attempts.clone()).await {
            Ok(output) => {
                self.capacity()
                    .record(operation, Access::Write, W::consumed(&output));
                Ok(Written::Applied(output))
            }
            Err(err) => match W::refusal(&err) {
                Some(found) => Ok(Written::Refused {
                    found,
                    maybe_applied: attempts.maybe_applied(),
                }),
                None => Err(write_error(operation, &err, attempts)),
            },
        }
    }

    /// Writes an item that must not exist yet: [`StoreError::Conflict`] if
    /// it does, unless an earlier attempt of this call may have written it
    /// and the item there is `ours`: then that attempt did.
    pub(crate) async fn put_new(
        &self,
        item: Item,
        operation: &'static str,
        ours: impl Fn(&Item) -> bool,
    ) -> Result<(), StoreError> {
        let put = self
            .client()
            .put_item()
            .table_name(&self.config().table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK);
        match self.write(operation, put, &WriteAttempts::default()).await? {
            Written::Applied(_) => Ok(()),
            Written::Refused { found, maybe_applied } => {
                if maybe_applied && found.as_ref().is_some_and(ours) {
                    tracing::debug!("{operation}: a retried write found its own item");
                    Ok(())
                } else {
                    Err(StoreError::Conflict)
                }
            }
        }
    }
}

impl DynamoStore {
    /// Deletes the item at `key` if it exists; returns whether it did. A
    /// delete retried by the SDK that finds nothing after an attempt that
    /// may have been applied: that attempt deleted it.
    pub(crate) async fn delete_existing(
        &self,
        key: Item,
        operation: &'static str,
    ) -> Result<bool, StoreError> {
        let delete = self
            .client()
            .delete_item()
            .table_name(&self.config().table)
            .set_key(Some(key))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK);
        match self.write(operation, delete, &WriteAttempts::default()).await? {
            Written::Applied(_) => Ok(true),
            Written::Refused { found, maybe_applied } => Ok(maybe_applied && found.is_none()),
        }
    }
}

/// A failed write: too large, or determinate or not as [`write_failed`]
/// says from the error and the operation's attempts.
fn write_error<E>(operation: &str, err: &SdkError<E, HttpResponse>, attempts: &WriteAttempts) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    let too_large = err.code() == Some("ValidationException")
        && err.message().is_some_and(|m| m.contains("size has exceeded"));
    if too_large {
        StoreError::TooLarge(err.message().unwrap_or_default().to_owned())
    } else {
        write_failed(operation, err, attempts)
    }
}
