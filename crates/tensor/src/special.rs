//! Special functions that the IR, the reference evaluator and the simulator's ALU must compute
//! identically (one implementation, so verification compares like with like).

/// The error function erf(x) = 2/√π ∫₀ˣ e^(−t²) dt, to about 1e-15 relative error.
///
/// For |x| < 3 it sums the series erf(x) = 2/√π · e^(−x²) · Σₙ 2ⁿ x^(2n+1) / (1·3·…·(2n+1)),
/// whose terms are all positive (no cancellation, unlike the alternating Taylor series), so
/// the sum is accurate to a few ulps; it needs fewer than 60 terms. From 3 on it is 1 − erfc(x)
/// with erfc from Laplace's continued fraction erfc(x) = e^(−x²)/√π · 1/(x + ½/(x + 1/(x +
/// 3⁄2/(x + …)))), which converges fast there (and keeps erf monotone up to 1). Beyond 6,
/// erfc(x) < 2.2e-17, below half an ulp of 1, so erf is ±1 in f64. NaN stays NaN.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    if a >= 6.0 {
        return 1f64.copysign(x);
    }
    let x2 = a * a;
    if a >= 3.0 {
        // Evaluated from the tail up; 60 levels are far past convergence for x ≥ 3.
        let mut f = a;
        for k in (1..=60).rev() {
            f = a + f64::from(k) / 2.0 / f;
        }
        let erfc = (-x2).exp() / (std::f64::consts::PI.sqrt() * f);
        return (1.0 - erfc).copysign(x);
    }
    let mut term = a;
    let mut sum = a;
    let mut n = 0.0;
    // Terms rise until n ≈ x² and then fall geometrically; 200 bounds the loop (x² < 9).
    for _ in 0..200 {
        n += 1.0;
        term *= 2.0 * x2 / (2.0 * n + 1.0);
        sum += term;
        if term <= sum * 1e-17 {
            break;
        }
    }
    let r = std::f64::consts::FRAC_2_SQRT_PI * (-x2).exp() * sum;
    r.min(1.0).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::erf;

    /// Reference values of erf (Abramowitz & Stegun table 7.1 / any 16-digit table).
    const KNOWN: [(f64, f64); 9] = [
        (0.0, 0.0),
        (1e-10, 1.128_379_167_095_512_6e-10),
        (0.1, 0.112_462_916_018_284_9),
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (1.5, 0.966_105_146_475_310_7),
        (2.0, 0.995_322_265_018_952_7),
        (3.0, 0.999_977_909_503_001_4),
        (4.0, 0.999_999_984_582_742_1),
    ];

    #[test]
    fn erf_matches_known_values_to_1e_12() {
        for (x, want) in KNOWN {
            let got = erf(x);
            assert!((got - want).abs() <= 1e-12 * want.abs().max(1e-300), "erf({x}) = {got}, want {want}");
            assert_eq!(erf(-x), -got, "erf is odd");
        }
    }

    #[test]
    fn erf_limits_and_nan() {
        assert_eq!(erf(6.0), 1.0);
        assert_eq!(erf(f64::INFINITY), 1.0);
        assert_eq!(erf(f64::NEG_INFINITY), -1.0);
        assert!(erf(f64::NAN).is_nan());
        // Continuous at the cut-over and monotone on a grid.
        assert!((erf(5.999_999) - 1.0).abs() < 1e-15);
        assert!((erf(3.0 - 1e-9) - erf(3.0)).abs() < 1e-12, "series and continued fraction meet at 3");
        let mut prev = -1.0;
        for k in -700..=700 {
            let v = erf(f64::from(k) / 100.0);
            assert!(v >= prev, "erf not monotone at {}", f64::from(k) / 100.0);
            prev = v;
        }
    }
}
