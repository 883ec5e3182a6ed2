//! Query strings of the listing routes, read strictly: an unknown
//! parameter, one given twice or a bad value is a 422 naming it, never a
//! silently unfiltered listing.

use store::MAX_PAGE;

use crate::FieldError;

/// Calls `each` with every parameter once; a repeated one is an error.
pub(crate) fn each(
    raw: &str,
    errors: &mut Vec<FieldError>,
    mut each: impl FnMut(&str, &str, &mut Vec<FieldError>),
) {
    let mut seen = Vec::new();
    for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        if seen.contains(&key) {
            errors.push(FieldError::new(key.as_ref(), "given more than once"));
            continue;
        }
        seen.push(key.clone());
        each(&key, &value, errors);
    }
}

/// `limit`: 1 to [`MAX_PAGE`].
pub(crate) fn limit(value: &str, limit: &mut usize, errors: &mut Vec<FieldError>) {
    match value.parse::<usize>() {
        Ok(n) if (1..=MAX_PAGE).contains(&n) => *limit = n,
        _ => errors.push(FieldError::new(
            "limit",
            format!("must be a whole number from 1 to {MAX_PAGE}"),
        )),
    }
}
