#!/usr/bin/env bash
# Makes hookline's DynamoDB table, as `hookline table create` does: the
# table (pk/sk, on-demand), the sparse `due` index the processors poll, the
# sparse keys-only `dead` index of failed jobs (the dead letter), and TTL on
# `expiresAt`.
#
# LocalStack runs it once it is ready (it is mounted into
# /etc/localstack/init/ready.d); it also runs anywhere the AWS CLI does,
# against any DynamoDB API: set AWS_ENDPOINT_URL (DynamoDB Local, say), or
# leave it unset inside LocalStack, where `awslocal` is used. Safe to run
# again: an existing table is left as it is.
#
# Environment: HOOKLINE_TABLE (default hookline).
set -euo pipefail

table="${HOOKLINE_TABLE:-hookline}"

if [[ -z "${AWS_ENDPOINT_URL:-}" ]] && command -v awslocal >/dev/null; then
    aws() { awslocal "$@"; }
fi

if aws dynamodb describe-table --table-name "$table" >/dev/null 2>&1; then
    echo "hookline: table $table already exists"
else
    aws dynamodb create-table \
        --table-name "$table" \
        --billing-mode PAY_PER_REQUEST \
        --attribute-definitions \
            AttributeName=pk,AttributeType=S \
            AttributeName=sk,AttributeType=S \
            AttributeName=dueShard,AttributeType=S \
            AttributeName=dueAt,AttributeType=N \
            AttributeName=deadKey,AttributeType=S \
        --key-schema AttributeName=pk,KeyType=HASH AttributeName=sk,KeyType=RANGE \
        --global-secondary-indexes '[
            {
                "IndexName": "due",
                "KeySchema": [
                    {"AttributeName": "dueShard", "KeyType": "HASH"},
                    {"AttributeName": "dueAt", "KeyType": "RANGE"}
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["leaseUntil"]}
            },
            {
                "IndexName": "dead",
                "KeySchema": [
                    {"AttributeName": "deadKey", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"}
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"}
            }
        ]' >/dev/null
    aws dynamodb wait table-exists --table-name "$table"
    echo "hookline: created table $table"
fi

ttl="$(aws dynamodb describe-time-to-live --table-name "$table" \
    --query 'TimeToLiveDescription.TimeToLiveStatus' --output text)"
if [[ "$ttl" != "ENABLED" && "$ttl" != "ENABLING" ]]; then
    aws dynamodb update-time-to-live --table-name "$table" \
        --time-to-live-specification Enabled=true,AttributeName=expiresAt >/dev/null
fi
echo "hookline: TTL on expiresAt is on for $table"
