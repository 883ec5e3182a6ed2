//! Records with their secret members sealed: what a store keeps.
//!
//! A record is a JSON object's text (an endpoint's, a source's, a tenant's
//! signing secrets). [`Sealer::seal_record`] takes the members that hold
//! secrets out of it and puts one `"sealed"` member at the end in their
//! place, the others kept byte for byte and in their order (a record's
//! `"v"` stays first, where its readers look); [`Sealer::open_record`]
//! puts them back where `"sealed"` was. A record without `"sealed"` was
//! written before secrets were sealed and is read as it is: the next write
//! of it seals it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use crate::{SEALED_MEMBER, SealError, Sealed, Sealer};

/// A JSON object's members in their order, each value as its text.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Ordered<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Ordered<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Members<'a>, M::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(name) = map.next_key::<Cow<'de, str>>()? {
                    members.push((name, map.next_value::<&'de RawValue>()?));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Ordered(std::marker::PhantomData))
    }
}

impl Serialize for Members<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

fn members(record: &str) -> Result<Members<'_>, SealError> {
    serde_json::from_str(record)
        .map_err(|e| SealError::Malformed(format!("the record is not a JSON object: {e}")))
}

fn text(members: &Members<'_>) -> Result<String, SealError> {
    serde_json::to_string(members)
        .map_err(|e| SealError::Malformed(format!("the record does not serialize: {e}")))
}

/// A record's members, for the caller of [`Sealer::open_record`] to say
/// which record it is (its context) from what it holds.
pub struct RecordView<'r, 'a>(&'r Members<'a>);

impl fmt::Debug for RecordView<'_, '_> {
    /// The members' names only: their values may be secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.0.iter().map(|(name, _)| name))
            .finish()
    }
}

impl RecordView<'_, '_> {
    /// The member `name` if it is a string (the record's `"tenant"`, its
    /// `"id"`).
    pub fn string(&self, name: &str) -> Option<String> {
        self.0
            .0
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, value)| serde_json::from_str::<String>(value.get()).ok())
    }
}

impl Sealer {
    /// `record` with its members named in `secret` (those it has, in the
    /// record's order) sealed for `context` into one `"sealed"` member at
    /// its end. A record with none of them is returned as it is; a record
    /// that already has a `"sealed"` member is refused (sealing it again
    /// would lose the first).
    pub async fn seal_record(
        &self,
        context: &[u8],
        record: &str,
        secret: &[&str],
    ) -> Result<String, SealError> {
        let Members(all) = members(record)?;
        if all.iter().any(|(name, _)| name == SEALED_MEMBER) {
            return Err(SealError::Malformed(format!(
                "the record already has a \"{SEALED_MEMBER}\" member"
            )));
        }
        let (hidden, mut kept): (Vec<_>, Vec<_>) = all
            .into_iter()
            .partition(|(name, _)| secret.contains(&name.as_ref()));
        if hidden.is_empty() {
            return Ok(record.to_owned());
        }
        // An array of [name, value] pairs keeps the members' order.
        let plaintext = Zeroizing::new(
            serde_json::to_vec(&hidden)
                .map_err(|e| SealError::Malformed(format!("members that are not JSON: {e}")))?,
        );
        let sealed = RawValue::from_string(self.seal(context, &plaintext).await?.to_json())
            .map_err(|e| SealError::Malformed(format!("the sealed form is not JSON: {e}")))?;
        kept.push((Cow::Borrowed(SEALED_MEMBER), &sealed));
        text(&Members(kept))
    }

    /// `record` with the members [`Sealer::seal_record`] sealed back in
    /// place of its `"sealed"` member, opened for the context `context`
    /// says from the record's other members. A record without `"sealed"`
    /// (one written before secrets were sealed) is returned as it is.
    pub async fn open_record<'a>(
        &self,
        record: &'a str,
        context: impl FnOnce(&RecordView<'_, '_>) -> Vec<u8>,
    ) -> Result<Cow<'a, str>, SealError> {
        let all = members(record)?;
        let Some(at) = all.0.iter().position(|(name, _)| name == SEALED_MEMBER) else {
            return Ok(Cow::Borrowed(record));
        };
        let context = context(&RecordView(&all));
        let sealed = Sealed::from_json(all.0[at].1.get())?;
        let plaintext = self.open(&context, &sealed).await?;
        // Only our own writer made this text, and it authenticated; say
        // nothing of its content anyway.
        let not_members =
            || SealError::Malformed("the sealed value opened but is not a list of members".to_owned());
        let hidden: Vec<(Cow<'_, str>, &RawValue)> =
            serde_json::from_slice(&plaintext).map_err(|_| not_members())?;
        let Members(mut all) = all;
        all.splice(at..=at, hidden);
        // The opened text holds the secrets: it is as secret as they are.
        Ok(Cow::Owned(text(&Members(all))?))
    }
}
