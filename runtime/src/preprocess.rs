//! Turning a camera frame into model input.
