//! Reading the connector's HTTP port: a minimal HTTP GET (blocking for tests, async for tools),
//! sample sums, and histograms with quantiles interpolated as Prometheus' `histogram_quantile`
//! does.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// GETs `/metrics` from `addr` (`host:port`).
pub async fn scrape(addr: &str) -> Result<String> {
    let get = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        anyhow::Ok(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(10), get)
        .await
        .context("timed out")?
        .with_context(|| format!("GET http://{addr}/metrics"))?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "GET http://{addr}/metrics: {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(body.to_owned())
}

/// `name{labels} value` lines of one metric name: (label text, value).
pub fn samples<'a>(body: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(move |line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
            (metric == name).then_some((labels, value.parse().ok()?))
        })
}

/// A minimal blocking HTTP/1.1 GET over loopback TCP: (status, body), or None while nothing
/// answers.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    // Connect and read are both bounded: a stopped (SIGSTOP) replica never answers.
    let mut stream = match addr.parse() {
        Ok(socket) => std::net::TcpStream::connect_timeout(&socket, Duration::from_secs(2)),
        Err(_) => std::net::TcpStream::connect(addr),
    }
    .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// The sum of the samples of `name` whose label text contains `label_filter`; None when no
/// sample matches.
pub fn sum_matching(body: &str, name: &str, label_filter: &str) -> Option<f64> {
    samples(body, name)
        .filter(|(labels, _)| labels.contains(label_filter))
        .map(|(_, v)| v)
        .reduce(|a, b| a + b)
}

/// The value of label `key` in a sample's label text (`topic="t",partition="3"}`).
pub fn label<'l>(labels: &'l str, key: &str) -> Option<&'l str> {
    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let len = labels[start..].find('"')?;
    Some(&labels[start..start + len])
}

/// The sum of every sample of `name` (0 when absent).
pub fn sum(body: &str, name: &str) -> f64 {
    samples(body, name).map(|(_, v)| v).sum()
}

/// Samples of `name` by the value of one label, e.g. `retries_total` by `cause`.
pub fn by_label(body: &str, name: &str, label: &str) -> Vec<(String, f64)> {
    let prefix = format!("{label}=\"");
    let mut out: Vec<(String, f64)> = Vec::new();
    for (labels, value) in samples(body, name) {
        let key = labels
            .split(',')
            .find_map(|l| l.trim_end_matches('}').strip_prefix(prefix.as_str()))
            .map_or("", |v| v.trim_end_matches('"'))
            .to_owned();
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 += value,
            None => out.push((key, value)),
        }
    }
    out
}

/// A histogram summed over its label sets: cumulative counts per upper bound, `+Inf` last.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// `<name>_bucket` samples of the scrape `body`.
    pub fn parse(body: &str, name: &str) -> Self {
        let bucket = format!("{name}_bucket");
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for (labels, value) in samples(body, &bucket) {
            let Some(le) = labels
                .split(',')
                .find_map(|l| l.trim_end_matches('}').strip_prefix("le=\""))
                .map(|l| l.trim_end_matches('"'))
            else {
                continue;
            };
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::NAN)
            };
            match buckets.iter_mut().find(|(b, _)| *b == le) {
                Some(entry) => entry.1 += value,
                None => buckets.push((le, value)),
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Self { buckets }
    }

    pub fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |(_, c)| *c)
    }

    /// Observations made after `earlier` was scraped.
    pub fn minus(&self, earlier: &Histogram) -> Histogram {
        let buckets = self
            .buckets
            .iter()
            .map(|&(le, c)| {
                let before = earlier
                    .buckets
                    .iter()
                    .find(|(b, _)| *b == le)
                    .map_or(0.0, |(_, c)| *c);
                (le, c - before)
            })
            .collect();
        Histogram { buckets }
    }

    /// Share of observations at or below `bound`, exact when `bound` is a bucket bound.
    pub fn share_within(&self, bound: f64) -> Option<f64> {
        let total = self.count();
        let &(_, below) = self.buckets.iter().find(|(le, _)| *le == bound)?;
        (total > 0.0).then(|| below / total)
    }

    /// The `q` quantile: linear interpolation inside the bucket holding rank `q * count`; the
    /// highest finite bound when it falls in `+Inf`. None without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 || self.buckets.len() < 2 {
            return None;
        }
        let rank = q * total;
        let i = self.buckets.iter().position(|(_, c)| *c >= rank)?;
        let (upper, count) = self.buckets[i];
        if upper.is_infinite() {
            return Some(self.buckets[i - 1].0);
        }
        let (lower, below) = if i == 0 {
            if upper <= 0.0 {
                return Some(upper);
            }
            (0.0, 0.0)
        } else {
            self.buckets[i - 1]
        };
        let inside = count - below;
        if inside <= 0.0 {
            return Some(upper);
        }
        Some(lower + (upper - lower) * (rank - below) / inside)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"# TYPE x histogram
x_bucket{topic="a",le="0.1"} 10
x_bucket{topic="a",le="0.2"} 30
x_bucket{topic="a",le="+Inf"} 40
x_bucket{topic="b",le="0.1"} 0
x_bucket{topic="b",le="0.2"} 10
x_bucket{topic="b",le="+Inf"} 10
x_count{topic="a"} 40
"#;

    #[test]
    fn quantiles_interpolate_like_histogram_quantile() {
        let h = Histogram::parse(BODY, "x");
        assert_eq!(
            h.buckets,
            vec![(0.1, 10.0), (0.2, 40.0), (f64::INFINITY, 50.0)]
        );
        // rank 25: bucket (0.1, 0.2] holds ranks 10..40 -> 0.1 + 0.1 * 15/30.
        assert!((h.quantile(0.5).unwrap() - 0.15).abs() < 1e-12);
        // rank 5 in the first bucket, interpolated from 0.
        assert!((h.quantile(0.1).unwrap() - 0.05).abs() < 1e-12);
        // rank 49.5 in +Inf: the highest finite bound.
        assert_eq!(h.quantile(0.99), Some(0.2));
        assert_eq!(Histogram::default().quantile(0.5), None);
        assert_eq!(h.share_within(0.2), Some(0.8));
        assert_eq!(h.share_within(0.15), None, "not a bucket bound");
        assert_eq!(Histogram::default().share_within(0.2), None);
        let later = Histogram {
            buckets: vec![(0.1, 10.0), (0.2, 50.0), (f64::INFINITY, 60.0)],
        };
        assert_eq!(
            later.minus(&h).buckets,
            vec![(0.1, 0.0), (0.2, 10.0), (f64::INFINITY, 10.0)]
        );
        assert_eq!(sum(BODY, "x_count"), 40.0);
        let by = by_label(BODY, "x_bucket", "topic");
        assert_eq!(by, vec![("a".to_owned(), 80.0), ("b".to_owned(), 20.0)]);
    }
}
