//! Set-ups shared by sphere-lite's own unit tests, integration tests and benches (one place
//! instead of the same lines in each); not part of the server's API.

use tinylcm_protocol::api::{EnrollRequest, EnrollResponse};

use crate::domain::Sphere;

/// A device enrolled on `sphere` (named `name`) with a fresh one-use enrollment key.
///
/// # Panics
/// When the key cannot be created or the enrollment fails: a test set-up has nothing to
/// recover.
pub fn enrolled(sphere: &Sphere, name: Option<&str>) -> EnrollResponse {
    let key = sphere
        .create_enrollment_key(1)
        .expect("create an enrollment key");
    sphere
        .enroll(&EnrollRequest {
            enrollment_key: key,
            name: name.map(str::to_owned),
            hardware: None,
        })
        .expect("enroll a device")
}
