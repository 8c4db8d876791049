//! Stripe's request parameters: form bodies and query strings in Stripe's encoding
//! (`metadata[attempt_id]=…`, `expand[]=latest_charge`, `created[gte]=…`), parsed into
//! the typed requests of each endpoint. Unknown parameters are refused as Stripe
//! refuses them (`parameter_unknown`), so an adapter that works here sends nothing the
//! real provider would reject.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Query, Request};
use axum::http::{header, Method, Uri};
use axum::Form;

use super::error::ApiError;
use crate::ledger::{CreatedRange, NewIntent, NewRefund};

/// The parameters of one call, in the order sent.
#[derive(Debug, Clone, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    /// A form body; an empty body (capture, cancel) is no parameters whatever its
    /// content type says.
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::invalid("parameter_invalid", "body", e.body_text()))?;
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        let form = Request::builder()
            .method(Method::POST)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(bytes))
            .expect("a request of static parts");
        let Form(pairs) = Form::<Vec<(String, String)>>::from_request(form, state)
            .await
            .map_err(|e| ApiError::invalid("parameter_invalid", "body", e.body_text()))?;
        Ok(Self(pairs))
    }
}

impl Params {
    /// The query string of a GET.
    pub fn from_query(uri: &Uri) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map_err(|e| ApiError::invalid("parameter_invalid", "query", e.body_text()))?;
        Ok(Self(pairs))
    }

    /// What makes two calls "the same" for an idempotency key: endpoint and parameters,
    /// in any order.
    pub fn fingerprint(&self, method: &str, path: &str) -> String {
        let mut pairs = self.0.clone();
        pairs.sort();
        serde_json::json!([method, path, pairs]).to_string()
    }

    /// Removes `name`; the last value wins if it was sent twice.
    fn take(&mut self, name: &str) -> Option<String> {
        let mut value = None;
        self.0.retain(|(k, v)| {
            if k == name {
                value = Some(v.clone());
                false
            } else {
                true
            }
        });
        value
    }

    fn required(&mut self, name: &str) -> Result<String, ApiError> {
        self.take(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            ApiError::invalid(
                "parameter_missing",
                name,
                format!("Missing required param: {name}."),
            )
        })
    }

    fn integer(&mut self, name: &str) -> Result<Option<u64>, ApiError> {
        self.take(name).map(|v| integer(name, &v)).transpose()
    }

    /// Every `metadata[key]=value` (at most 50 keys, as Stripe).
    fn metadata(&mut self) -> Result<BTreeMap<String, String>, ApiError> {
        let mut metadata = BTreeMap::new();
        let mut rest = Vec::with_capacity(self.0.len());
        for (k, v) in self.0.drain(..) {
            match k
                .strip_prefix("metadata[")
                .and_then(|k| k.strip_suffix(']'))
            {
                Some(key) if !key.is_empty() && key.len() <= 40 && v.len() <= 500 => {
                    metadata.insert(key.to_owned(), v);
                }
                Some(_) => {
                    return Err(ApiError::invalid(
                        "parameter_invalid",
                        &k,
                        "Metadata keys are 1 to 40 characters, values at most 500.",
                    ))
                }
                None => rest.push((k, v)),
            }
        }
        self.0 = rest;
        if metadata.len() > 50 {
            return Err(ApiError::invalid(
                "parameter_invalid",
                "metadata",
                "Metadata can have at most 50 keys.",
            ));
        }
        Ok(metadata)
    }

    /// Whether `expand[]` asks for `expandable` (the only field this provider expands).
    fn expand(&mut self, expandable: &str) -> Result<bool, ApiError> {
        let mut expand = false;
        let mut rest = Vec::with_capacity(self.0.len());
        for (k, v) in self.0.drain(..) {
            let is_expand = k == "expand[]"
                || k.strip_prefix("expand[")
                    .and_then(|k| k.strip_suffix(']'))
                    .is_some_and(|i| i.parse::<u32>().is_ok());
            match (is_expand, v == expandable) {
                (true, true) => expand = true,
                (true, false) => {
                    return Err(ApiError::invalid(
                        "parameter_invalid",
                        "expand",
                        format!("This property cannot be expanded ({v})."),
                    ))
                }
                (false, _) => rest.push((k, v)),
            }
        }
        self.0 = rest;
        Ok(expand)
    }

    /// Refuses whatever parameter is left unread.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.0.into_iter().next() {
            None => Ok(()),
            Some((k, _)) => Err(ApiError::invalid(
                "parameter_unknown",
                &k,
                format!("Received unknown parameter: {k}"),
            )),
        }
    }
}

fn integer(name: &str, value: &str) -> Result<u64, ApiError> {
    value.parse::<u64>().map_err(|_| {
        ApiError::invalid(
            "parameter_invalid_integer",
            name,
            format!("Invalid integer: {value}"),
        )
    })
}

/// The largest amount the provider takes (Stripe's eight digits).
const MAX_AMOUNT: u64 = 99_999_999;

/// `POST /v1/payment_intents`: the new intent, and whether to expand its charge.
pub(crate) fn create(p: &mut Params) -> Result<(NewIntent, bool), ApiError> {
    let amount = integer("amount", &p.required("amount")?)?;
    if amount < 1 {
        return Err(ApiError::invalid(
            "amount_too_small",
            "amount",
            "Amount must be at least 1.",
        ));
    }
    if amount > MAX_AMOUNT {
        return Err(ApiError::invalid(
            "amount_too_large",
            "amount",
            "Amount must be no more than 99999999.",
        ));
    }
    let currency = p.required("currency")?.to_ascii_lowercase();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err(ApiError::invalid(
            "parameter_invalid",
            "currency",
            format!("Invalid currency: {currency}."),
        ));
    }
    // This provider only authorizes now and captures later, as flashsale does.
    let capture_method = p.required("capture_method")?;
    if capture_method != "manual" {
        return Err(ApiError::invalid(
            "parameter_invalid",
            "capture_method",
            "This provider supports only capture_method=manual.",
        ));
    }
    let confirm = p.required("confirm")?;
    if confirm != "true" {
        return Err(ApiError::invalid(
            "parameter_invalid",
            "confirm",
            "This provider supports only confirm=true.",
        ));
    }
    let payment_method = p.required("payment_method")?;
    let metadata = p.metadata()?;
    let expand = p.expand("latest_charge")?;
    Ok((
        NewIntent {
            amount,
            currency,
            payment_method,
            metadata,
        },
        expand,
    ))
}

/// `POST …/capture` and `GET /v1/payment_intents/{id}`: whether to expand the charge.
pub(crate) fn expand_only(p: &mut Params) -> Result<bool, ApiError> {
    p.expand("latest_charge")
}

/// `POST …/cancel`: the optional reason, and whether to expand the charge.
pub(crate) fn cancel(p: &mut Params) -> Result<(Option<String>, bool), ApiError> {
    const REASONS: [&str; 4] = [
        "duplicate",
        "fraudulent",
        "requested_by_customer",
        "abandoned",
    ];
    let reason = p.take("cancellation_reason");
    if let Some(reason) = &reason {
        if !REASONS.contains(&reason.as_str()) {
            return Err(ApiError::invalid(
                "parameter_invalid",
                "cancellation_reason",
                format!("Invalid cancellation_reason: {reason}"),
            ));
        }
    }
    Ok((reason, p.expand("latest_charge")?))
}

/// `POST /v1/refunds`.
pub(crate) fn refund(p: &mut Params) -> Result<NewRefund, ApiError> {
    const REASONS: [&str; 3] = ["duplicate", "fraudulent", "requested_by_customer"];
    let payment_intent = p.required("payment_intent")?;
    let amount = p.integer("amount")?;
    if amount == Some(0) {
        return Err(ApiError::invalid(
            "amount_too_small",
            "amount",
            "Amount must be at least 1.",
        ));
    }
    let reason = p.take("reason");
    if let Some(reason) = &reason {
        if !REASONS.contains(&reason.as_str()) {
            return Err(ApiError::invalid(
                "parameter_invalid",
                "reason",
                format!("Invalid reason: {reason}"),
            ));
        }
    }
    Ok(NewRefund {
        payment_intent,
        amount,
        reason,
        metadata: p.metadata()?,
    })
}

/// `GET /v1/payment_intents`.
#[derive(Debug, Clone)]
pub(crate) struct ListQuery {
    pub created: CreatedRange,
    pub starting_after: Option<String>,
    pub limit: usize,
    pub expand: bool,
}

fn limit(p: &mut Params) -> Result<usize, ApiError> {
    let limit = p.integer("limit")?.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid(
            "parameter_invalid_integer",
            "limit",
            "limit must be between 1 and 100.",
        ));
    }
    Ok(limit as usize)
}

pub(crate) fn list(p: &mut Params) -> Result<ListQuery, ApiError> {
    let created = CreatedRange {
        gte: p.integer("created[gte]")?,
        gt: p.integer("created[gt]")?,
        lte: p.integer("created[lte]")?,
        lt: p.integer("created[lt]")?,
    };
    Ok(ListQuery {
        created,
        starting_after: p.take("starting_after").filter(|v| !v.is_empty()),
        limit: limit(p)?,
        expand: p.expand("data.latest_charge")?,
    })
}

/// `GET /v1/payment_intents/search`: only `metadata['key']:'value'`.
#[derive(Debug, Clone)]
pub(crate) struct SearchQuery {
    pub key: String,
    pub value: String,
    pub limit: usize,
    pub expand: bool,
}

pub(crate) fn search(p: &mut Params) -> Result<SearchQuery, ApiError> {
    let query = p.required("query")?;
    let Some((key, value)) = metadata_query(&query) else {
        return Err(ApiError::invalid(
            "parameter_invalid",
            "query",
            "This provider searches only by metadata['key']:'value'.",
        ));
    };
    Ok(SearchQuery {
        key,
        value,
        limit: limit(p)?,
        expand: p.expand("data.latest_charge")?,
    })
}

/// `metadata['key']:'value'` (either quote) → (key, value).
fn metadata_query(query: &str) -> Option<(String, String)> {
    let rest = query.trim().strip_prefix("metadata[")?;
    let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let rest = &rest[1..];
    let (key, rest) = rest.split_once(quote)?;
    let rest = rest.strip_prefix("]:")?.strip_prefix(quote)?;
    let value = rest.strip_suffix(quote)?;
    if key.is_empty() || value.contains(quote) {
        return None;
    }
    Some((key.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_metadata_queries_are_understood() {
        assert_eq!(
            metadata_query("metadata['attempt_id']:'abc'"),
            Some(("attempt_id".into(), "abc".into()))
        );
        assert_eq!(
            metadata_query(r#"metadata["k"]:"v""#),
            Some(("k".into(), "v".into()))
        );
        assert_eq!(metadata_query("status:'succeeded'"), None);
        assert_eq!(metadata_query("metadata['k']:'v' AND amount>1"), None);
    }

    #[test]
    fn the_fingerprint_ignores_parameter_order() {
        let a = Params(vec![("a".into(), "1".into()), ("b".into(), "2".into())]);
        let b = Params(vec![("b".into(), "2".into()), ("a".into(), "1".into())]);
        assert_eq!(a.fingerprint("POST", "/x"), b.fingerprint("POST", "/x"));
        assert_ne!(a.fingerprint("POST", "/x"), a.fingerprint("POST", "/y"));
    }
}
