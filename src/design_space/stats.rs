//! Comparing measured models: correlation, the empirical distribution, the Pareto front.
//!
//! ```
//! use regnet_wgpu::design_space::stats;
//! let macs = [1.0, 2.0, 3.0, 4.0];
//! let ms = [1.1, 1.9, 3.2, 3.9];
//! assert!(stats::pearson(&macs, &ms).unwrap() > 0.99);
//! assert_eq!(stats::spearman(&macs, &ms), Some(1.0));
//! // The fastest model for its MACs: more MACs than every faster one.
//! assert_eq!(stats::pareto_front(&macs, &ms), vec![0, 1, 2, 3]);
//! ```

/// Pearson's correlation of `x` and `y`; `None` with fewer than two pairs, different lengths,
/// or a constant side.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len();
    if n < 2 || y.len() != n {
        return None;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / n as f64;
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    Some((sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0))
}

/// Ranks from 1, ties given the mean of the ranks they span (as scipy's `rankdata`).
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = mean_rank;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation: Pearson's of the ranks (ties averaged).
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() {
        return None;
    }
    pearson(&ranks(x), &ranks(y))
}

/// The median (mean of the middle two for an even count); `None` when empty.
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    })
}

/// The empirical distribution function of `v`: its sorted values, each with the share of
/// values at or below it (`(x, F(x))`, F rising by 1/n per value to 1).
pub fn edf(v: &[f64]) -> Vec<(f64, f64)> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    s.into_iter()
        .enumerate()
        .map(|(i, x)| (x, (i + 1) as f64 / n))
        .collect()
}

/// The Pareto front of work against time: the indices of the models no other model beats,
/// i.e. none has at least as many MACs in at most the time with one of them strictly better.
/// Sorted by time (and so by MACs).
pub fn pareto_front(macs: &[f64], ms: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..macs.len().min(ms.len())).collect();
    // Fastest first; of equal times the most MACs first, so it dominates the rest.
    order.sort_by(|&a, &b| ms[a].total_cmp(&ms[b]).then(macs[b].total_cmp(&macs[a])));
    let mut front = Vec::new();
    let mut best = f64::NEG_INFINITY;
    for i in order {
        if macs[i] > best {
            best = macs[i];
            front.push(i);
        }
    }
    front
}

/// The model with the most MACs whose time is at most `budget` (ties: the faster); `None`
/// when every model is slower.
pub fn best_under_budget(macs: &[f64], ms: &[f64], budget: f64) -> Option<usize> {
    (0..macs.len().min(ms.len()))
        .filter(|&i| ms[i] <= budget)
        .max_by(|&a, &b| macs[a].total_cmp(&macs[b]).then(ms[b].total_cmp(&ms[a])))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values from scipy.stats 1.17.1 (pearsonr, spearmanr, rankdata):
    //   x = [3, 1, 4, 1, 5, 9, 2, 6], y = [2.7, 1.8, 2.8, 1.8, 2.8, 4.5, 9.0, 4.5]
    const X: [f64; 8] = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0];
    const Y: [f64; 8] = [2.7, 1.8, 2.8, 1.8, 2.8, 4.5, 9.0, 4.5];

    #[test]
    fn correlations_match_scipy() {
        assert_eq!(ranks(&X), [4.0, 1.5, 5.0, 1.5, 6.0, 8.0, 3.0, 7.0]);
        let p = pearson(&X, &Y).unwrap();
        let s = spearman(&X, &Y).unwrap();
        assert!((p - SCIPY_PEARSON).abs() < 1e-12, "{p}");
        assert!((s - SCIPY_SPEARMAN).abs() < 1e-12, "{s}");
        assert_eq!(pearson(&[1.0, 1.0], &[2.0, 3.0]), None);
        assert_eq!(pearson(&[1.0], &[2.0]), None);
    }

    const SCIPY_PEARSON: f64 = 0.1435986650732331;
    const SCIPY_SPEARMAN: f64 = 0.621997473274912;

    #[test]
    fn medians_and_edfs() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(
            edf(&[2.0, 1.0, 3.0, 2.0]),
            [(1.0, 0.25), (2.0, 0.5), (2.0, 0.75), (3.0, 1.0)]
        );
    }

    #[test]
    fn the_front_keeps_what_nothing_beats() {
        // (MACs, ms): c beats b (more work, less time); e ties d's time with more work.
        let macs = [1.0, 2.0, 3.0, 5.0, 6.0, 4.0];
        let ms = [1.0, 3.0, 2.0, 4.0, 4.0, 5.0];
        assert_eq!(pareto_front(&macs, &ms), [0, 2, 4]);
        assert_eq!(best_under_budget(&macs, &ms, 3.5), Some(2));
        assert_eq!(best_under_budget(&macs, &ms, 0.5), None);
        assert_eq!(best_under_budget(&macs, &ms, 10.0), Some(4));
    }
}
