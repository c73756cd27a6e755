//! The embedded (redb) adapter: the `PredictionStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! tables and shared helpers live in the parent module.

use super::*;
use crate::ports::PredictionStore;

/// Index the new ones of `samples` inside `tx` (see [`PredictionStore::put_predictions`]);
/// how many were new.
pub(super) fn put_predictions_in(
    tx: &redb::WriteTransaction,
    samples: &[PredictionView],
) -> Result<usize, StoreError> {
    let mut new = 0;
    let mut table = tx.open_table(PREDICTIONS).map_err(err)?;
    for sample in samples {
        let key = prediction_key(sample.unix_ms, &sample.key);
        if table.get(key.as_str()).map_err(err)?.is_none() {
            table
                .insert(key.as_str(), to_json(sample)?.as_slice())
                .map_err(err)?;
            new += 1;
        }
    }
    Ok(new)
}

impl PredictionStore for RedbTracking {
    fn put_predictions(&self, samples: &[PredictionView]) -> Result<usize, StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        let new = put_predictions_in(&tx, samples)?;
        tx.commit().map_err(err)?;
        Ok(new)
    }

    fn predictions(
        &self,
        filter: &PredictionFilter,
        after: Option<&PredictionCursor>,
        limit: usize,
    ) -> Result<Vec<PredictionView>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(PREDICTIONS).map_err(err)?;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        // Keys sort by (time, blob key); `<ms>` alone sorts before every key of that ms, so
        // it bounds a time range exactly. Scanned backwards from the cursor or `until`, down to
        // `since`; device and class are checked per row (fine for the embedded default's fleet
        // sizes; the MLflow adapter filters on the server).
        let mut upper = filter.until.map(|t| format!("{t:020}"));
        if let Some(c) = after {
            let at = prediction_key(c.unix_ms, &c.key);
            if upper.as_ref().is_none_or(|u| at < *u) {
                upper = Some(at);
            }
        }
        let lower = format!("{:020}", filter.since.unwrap_or(0));
        let rows = match &upper {
            Some(u) if *u <= lower => return Ok(out),
            Some(u) => table.range(lower.as_str()..u.as_str()).map_err(err)?,
            None => table.range(lower.as_str()..).map_err(err)?,
        };
        for row in rows.rev() {
            let (_, v) = row.map_err(err)?;
            let sample: PredictionView = from_json(v.value())?;
            if filter.matches(&sample) {
                out.push(sample);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}
