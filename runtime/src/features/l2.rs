//! L2 normalisation with a norm floor, so a zero vector stays zero.

/// Norms below this are treated as this value (as the original did), so a
/// zero or nearly zero embedding is not blown up to NaN or huge values.
pub const NORM_FLOOR: f32 = 1e-12;

/// Euclidean norm of `v`, accumulated in eight lanes (vectorises).
pub fn l2_norm(v: &[f32]) -> f32 {
    crate::knn::distance::dot(v, v).sqrt()
}

/// Factor that L2-normalises `v`: `1 / max(‖v‖, NORM_FLOOR)`.
pub(crate) fn l2_factor(v: &[f32]) -> f32 {
    1.0 / l2_norm(v).max(NORM_FLOOR)
}

/// Scale `v` in place to unit length (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let f = l2_factor(v);
    v.iter_mut().for_each(|x| *x *= f);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_length_and_zero_stays_zero() {
        let mut v = [3.0, 4.0];
        l2_normalize(&mut v);
        assert_eq!(v, [0.6, 0.8]);
        let mut z = [0.0f32; 5];
        l2_normalize(&mut z);
        assert_eq!(z, [0.0; 5]);
    }
}
