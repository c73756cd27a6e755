//! The MLflow adapter: the `PredictionStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! client calls and shared helpers live in the parent module.

use super::*;
use crate::ports::PredictionStore;

impl PredictionStore for MlflowTracking {
    fn put_predictions(&self, samples: &[PredictionView]) -> Result<usize, StoreError> {
        let mut packages: Vec<((&str, &str), Vec<&PredictionView>)> = Vec::new();
        for sample in samples {
            let id = (sample.device_id.as_str(), sample.package_id.as_str());
            match packages.iter_mut().find(|(p, _)| *p == id) {
                Some((_, list)) => list.push(sample),
                None => packages.push((id, vec![sample])),
            }
        }
        let mut new = 0;
        for (_, list) in &packages {
            new += self.put_package_predictions(list)?;
        }
        Ok(new)
    }

    fn predictions(
        &self,
        filter: &PredictionFilter,
        after: Option<&PredictionCursor>,
        limit: usize,
    ) -> Result<Vec<PredictionView>, StoreError> {
        let mut out: Vec<PredictionView> = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let mut f = Filter::new().tag_eq(KIND, &lit_const(KIND_PREDICTION));
        for (key, value) in [(DEVICE, &filter.device), (CLASS, &filter.class)] {
            if let Some(v) = value {
                match Literal::new(v) {
                    Ok(l) => f = f.tag_eq(key, &l),
                    // No sample has such a device id or class.
                    Err(_) => return Ok(out),
                }
            }
        }
        f = f.metric(UNIX_MS, Cmp::Ge, filter.since.unwrap_or(0));
        // `< until`, and `<= cursor time` (ties at the cursor's ms are sorted by key below).
        let cursor_bound = after.map(|c| c.unix_ms.saturating_add(1));
        if let Some(bound) = [filter.until, cursor_bound].into_iter().flatten().min() {
            f = f.metric(UNIX_MS, Cmp::Lt, bound);
        }
        let query = RunQuery {
            experiment_ids: vec![self.predictions.clone()],
            filter: f.build(),
            order_by: vec![format!("metrics.`{UNIX_MS}` DESC")],
        };
        // MLflow orders by time only; samples of one millisecond come in any order. So read
        // until the page is full *and* the time has moved past the page's oldest sample, then
        // sort by (time, key) and cut: the page is then exact, ties included.
        let page = u32::try_from(limit.max(100)).unwrap_or(u32::MAX);
        let mut seen: HashSet<String> = HashSet::new();
        let mut scanned = 0;
        let mut token: Option<String> = None;
        'pages: loop {
            let (runs, next) = self
                .client
                .search_runs_page(&query, page, token.as_deref())?;
            for run in &runs {
                scanned += 1;
                let sample = prediction_of(run)?;
                if out.len() >= limit && out.last().is_some_and(|l| sample.unix_ms < l.unix_ms) {
                    break 'pages;
                }
                if after.is_some_and(|c| !c.precedes(&sample)) || !filter.matches(&sample) {
                    continue;
                }
                // A copy left by two replicas processing one package is listed once.
                if seen.insert(sample.key.clone()) {
                    out.push(sample);
                }
            }
            match next {
                Some(t) if scanned < MAX_PREDICTION_SCAN => token = Some(t),
                _ => break,
            }
        }
        out.sort_by(|a, b| (b.unix_ms, &b.key).cmp(&(a.unix_ms, &a.key)));
        out.truncate(limit);
        Ok(out)
    }
}
