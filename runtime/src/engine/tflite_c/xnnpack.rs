//! `TfLiteXNNPackDelegateOptions` across TF Lite releases: asking the library
//! for its defaults without falling into the calling-convention trap.
//!
//! `TfLiteXNNPackDelegateOptionsDefault()` returns the options struct *by
//! value*, and the struct grew over the releases (TensorFlow's
//! `tensorflow/lite/delegates/xnnpack/xnnpack_delegate.h`):
//!
//! | release | fields | size | returned (x86_64 SysV, AArch64 AAPCS64) |
//! |---|---|---|---|
//! | 2.6 | `int32_t num_threads; uint32_t flags` | 8 | in a register (RAX / x0) |
//! | 2.21 | `num_threads; uint32_t runtime_flags; uint32_t flags; weights_cache*; bool handle_variable_ops; const char* weight_cache_file_path; int weight_cache_file_descriptor; void* weight_cache_provider` | 56 | through a hidden pointer the caller passes (RDI / x8) |
//!
//! Declaring the wrong return type does not fail loudly: a register-returning
//! function called as if it wrote through a hidden pointer leaves the caller's
//! buffer untouched, and the reverse makes the library write 56 bytes to
//! whatever address happens to be in RDI/x8. So the convention is chosen from
//! `TfLiteVersion()` by [`options_abi`], only for releases whose header we have
//! read; every other release gets the zeroed struct (what the runtime used
//! before), with a log line saying why.
//!
//! Why call it at all: the defaults carry build-time choices a zeroed struct
//! throws away, above all `TFLITE_XNNPACK_DELEGATE_FLAG_QS8`/`QU8`, which TF
//! Lite's CMake build turns on so that int8/uint8 models run on XNNPACK.

use std::fmt;
use std::mem::MaybeUninit;

use crate::engine::pins;

/// Bytes reserved for the options struct: several times the largest known
/// release (56 bytes in 2.21), so a release that appends fields still fits.
pub(crate) const OPTIONS_CAPACITY: usize = 512;

/// Storage for `TfLiteXNNPackDelegateOptions` of any known release.
///
/// `num_threads` is the first field in every release. Over-sized and
/// over-aligned so it can stand in for the library's struct both as the
/// hidden return slot of `TfLiteXNNPackDelegateOptionsDefault` and as the
/// argument of `TfLiteXNNPackDelegateCreate`, which reads only its own size.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct XnnpackOptions {
    bytes: [u8; OPTIONS_CAPACITY],
}

impl XnnpackOptions {
    /// All fields zero: every release's "off" for each flag and pointer.
    pub(crate) fn zeroed() -> Self {
        XnnpackOptions {
            bytes: [0; OPTIONS_CAPACITY],
        }
    }

    pub(crate) fn num_threads(&self) -> i32 {
        i32::from_ne_bytes(self.word(0))
    }

    pub(crate) fn set_num_threads(&mut self, threads: i32) {
        self.bytes[..4].copy_from_slice(&threads.to_ne_bytes());
    }

    fn u32_at(&self, offset: usize) -> u32 {
        u32::from_ne_bytes(self.word(offset))
    }

    fn word(&self, offset: usize) -> [u8; 4] {
        let mut w = [0u8; 4];
        w.copy_from_slice(&self.bytes[offset..offset + 4]);
        w
    }

    /// The raw bytes (tests compare what the library wrote).
    #[cfg(test)]
    fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for XnnpackOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XnnpackOptions")
            .field("num_threads", &self.num_threads())
            .finish_non_exhaustive()
    }
}

/// The 2.6 struct exactly (8 bytes): a C function returning it uses RAX / x0.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Options8 {
    num_threads: i32,
    flags: u32,
}

/// The address of `TfLiteXNNPackDelegateOptionsDefault`, untyped until
/// [`options_abi`] says how it returns.
pub(crate) type RawFn = unsafe extern "C" fn();

/// How one release's `TfLiteXNNPackDelegateOptionsDefault` hands back its struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionsAbi {
    /// `{int32_t num_threads; uint32_t flags}` (8 bytes) in a register.
    InRegister,
    /// A struct of `size` bytes (more than 16) written through a hidden
    /// pointer; the delegate flags are the `uint32_t` at `flags_offset`.
    Indirect {
        /// The struct's size in bytes.
        size: usize,
        /// Where its `uint32_t` delegate flags are.
        flags_offset: usize,
    },
}

impl OptionsAbi {
    fn flags_offset(self) -> usize {
        match self {
            OptionsAbi::InRegister => 4,
            OptionsAbi::Indirect { flags_offset, .. } => flags_offset,
        }
    }
}

/// One release whose header was read: its convention and the flag bits it defines.
struct KnownRelease {
    minor: u32,
    abi: OptionsAbi,
    /// Every `TFLITE_XNNPACK_DELEGATE_FLAG_*` bit the header defines; a
    /// default with other bits set did not come from this layout.
    flag_mask: u32,
}

/// Releases whose `xnnpack_delegate.h` was read (2.6 also checked against the
/// pinned library's machine code: `xor eax,eax; ret`, and `Create` copies 8
/// bytes). Releases in between changed the struct more than once (16 bytes,
/// returned in two registers, around 2.9–2.11; `runtime_flags` inserted before
/// `flags` later), so they are not guessed.
const KNOWN_RELEASES: &[KnownRelease] = &[
    KnownRelease {
        minor: 6,
        abi: OptionsAbi::InRegister,
        // QS8 | QU8.
        flag_mask: 0x3,
    },
    KnownRelease {
        minor: 21,
        abi: OptionsAbi::Indirect {
            size: 56,
            flags_offset: 8,
        },
        // QS8 … DISABLE_SUBGRAPH_RESHAPING (0x1 through 0x400).
        flag_mask: 0x7ff,
    },
];

const _: () = {
    // Every known struct fits the buffer (checked at compile time).
    let mut i = 0;
    while i < KNOWN_RELEASES.len() {
        if let OptionsAbi::Indirect { size, flags_offset } = KNOWN_RELEASES[i].abi {
            assert!(size > 16 && size <= OPTIONS_CAPACITY && flags_offset + 4 <= size);
        }
        i += 1;
    }
};

fn known_release(version: &str) -> Option<&'static KnownRelease> {
    let (major, minor) = pins::major_minor(version)?;
    if major != 2 {
        return None;
    }
    KNOWN_RELEASES.iter().find(|r| r.minor == minor)
}

/// How the library reporting `version` returns its default options, or `None`
/// when that release's layout is not known (then the defaults are not asked for).
pub fn options_abi(version: &str) -> Option<OptionsAbi> {
    known_release(version).map(|r| r.abi)
}

/// Where the options handed to `TfLiteXNNPackDelegateCreate` came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionsSource {
    /// `TfLiteXNNPackDelegateOptionsDefault`, called with this convention.
    LibraryDefault(OptionsAbi),
    /// A zeroed struct (quantised-op flags off), for the reason given.
    Zeroed(String),
}

/// What the XNNPACK delegate was created with, for the start-up log and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XnnpackSetup {
    /// Where the options came from (the library's defaults, or zeroed and why).
    pub source: OptionsSource,
    /// The delegate flags in the options (`None` when the layout is unknown).
    pub flags: Option<u32>,
    /// The threads the delegate was given.
    pub num_threads: i32,
}

impl fmt::Display for XnnpackSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            OptionsSource::LibraryDefault(OptionsAbi::InRegister) => f.write_str(
                "TfLiteXNNPackDelegateOptionsDefault (8-byte struct returned in a register)",
            )?,
            OptionsSource::LibraryDefault(OptionsAbi::Indirect { size, .. }) => write!(
                f,
                "TfLiteXNNPackDelegateOptionsDefault ({size}-byte struct returned through a hidden pointer)"
            )?,
            OptionsSource::Zeroed(why) => write!(f, "zeroed options ({why})")?,
        }
        match self.flags {
            Some(flags) => write!(f, ", flags {flags:#x} ({})", flag_names(flags))?,
            None => f.write_str(", flags unknown")?,
        }
        write!(f, ", num_threads {}", self.num_threads)
    }
}

/// Names of the flag bits that matter for our models.
fn flag_names(flags: u32) -> String {
    const NAMES: &[(u32, &str)] = &[
        (0x1, "QS8"),
        (0x2, "QU8"),
        (0x4, "FORCE_FP16"),
        (0x8, "DYNAMIC_FULLY_CONNECTED"),
        (0x10, "VARIABLE_OPERATORS"),
        (0x20, "TRANSIENT_INDIRECTION_BUFFER"),
        (0x40, "ENABLE_LATEST_OPERATORS"),
        (0x80, "ENABLE_SUBGRAPH_RESHAPING"),
        (0x200, "SLOW_CONSISTENT_ARITHMETIC"),
        (0x400, "DISABLE_SUBGRAPH_RESHAPING"),
    ];
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        "none: int8/uint8 ops stay on the builtin kernels".into()
    } else {
        names.join(" ")
    }
}

/// Call `default_fn` with the convention `abi` and return what it wrote, the
/// rest of the buffer zero.
///
/// # Safety
/// `default_fn` must be a `TfLiteXNNPackDelegateOptionsDefault` that returns
/// its struct as `abi` says.
unsafe fn call_default(default_fn: RawFn, abi: OptionsAbi) -> XnnpackOptions {
    let mut opts = XnnpackOptions::zeroed();
    match abi {
        OptionsAbi::InRegister => {
            // SAFETY: the caller guarantees the function returns exactly
            // `Options8` (8 bytes, in RAX / x0); a fn pointer's type only
            // tells the compiler how to call it.
            let f: unsafe extern "C" fn() -> Options8 = unsafe { std::mem::transmute(default_fn) };
            // SAFETY: no arguments, no side effects besides the return value.
            let o = unsafe { f() };
            opts.set_num_threads(o.num_threads);
            opts.bytes[4..8].copy_from_slice(&o.flags.to_ne_bytes());
        }
        OptionsAbi::Indirect { size, .. } => {
            // Declaring a return type larger than 16 bytes makes the compiler
            // pass the address of its return slot in RDI (x86_64) or x8
            // (AArch64), which is where a function returning any struct larger
            // than 16 bytes writes it. The callee fills only its own `size`
            // bytes, hence `MaybeUninit` (same layout, no claim that all 512
            // bytes are initialised).
            // SAFETY: as above, the caller guarantees the indirect convention;
            // `XnnpackOptions` is larger than 16 bytes, so both sides use it.
            let f: unsafe extern "C" fn() -> MaybeUninit<XnnpackOptions> =
                unsafe { std::mem::transmute(default_fn) };
            // SAFETY: no arguments; the callee writes `size` bytes into the slot.
            let slot = unsafe { f() };
            // SAFETY: `size` <= OPTIONS_CAPACITY (checked at compile time for
            // every known release) and those bytes were written by the callee.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    slot.as_ptr().cast::<u8>(),
                    opts.bytes.as_mut_ptr(),
                    size,
                );
            }
        }
    }
    opts
}

/// Whether the options can be asked from the library on this target: the two
/// conventions above are those of x86_64 SysV and AArch64 AAPCS64.
const TARGET_SUPPORTED: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// Options for `TfLiteXNNPackDelegateCreate` with `threads` threads: the
/// library's defaults when its release is known and `default_fn` is exported,
/// else a zeroed struct. Logs which, with the flags.
///
/// # Safety
/// `default_fn`, when given, must be the `TfLiteXNNPackDelegateOptionsDefault`
/// of the library whose `TfLiteVersion()` returned `version`.
pub(crate) unsafe fn build_options(
    version: &str,
    default_fn: Option<RawFn>,
    threads: i32,
) -> (XnnpackOptions, XnnpackSetup) {
    let zeroed = |why: String, flags: Option<u32>| {
        let mut opts = XnnpackOptions::zeroed();
        opts.set_num_threads(threads);
        let setup = XnnpackSetup {
            source: OptionsSource::Zeroed(why),
            flags,
            num_threads: threads,
        };
        tracing::warn!("TF Lite {version}: XNNPACK delegate with {setup}");
        (opts, setup)
    };
    // Zeroed flags sit at offset 4 (2.6) or 8 (2.21); both read as 0.
    let Some(default_fn) = default_fn else {
        return zeroed(
            "the library does not export TfLiteXNNPackDelegateOptionsDefault".into(),
            Some(0),
        );
    };
    if !TARGET_SUPPORTED {
        return zeroed(
            format!(
                "asking the library for its defaults is only implemented for x86_64 and aarch64, not {}",
                std::env::consts::ARCH
            ),
            Some(0),
        );
    }
    let Some(release) = known_release(version) else {
        return zeroed(
            format!(
                "the layout of TfLiteXNNPackDelegateOptions in TF Lite {version} is not one this \
                 runtime knows (known: {}), so TfLiteXNNPackDelegateOptionsDefault is not called",
                KNOWN_RELEASES
                    .iter()
                    .map(|r| format!("2.{}", r.minor))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None,
        );
    };
    // SAFETY: `release.abi` is the convention of this library's release
    // (`known_release` matched its `TfLiteVersion()`), per the caller's contract.
    let mut opts = unsafe { call_default(default_fn, release.abi) };
    let flags = opts.u32_at(release.abi.flags_offset());
    if flags & !release.flag_mask != 0 {
        // Bits this release does not define: the struct is not laid out as
        // its header says (a patched or mislabelled build). Do not pass it on.
        return zeroed(
            format!(
                "TfLiteXNNPackDelegateOptionsDefault returned flags {flags:#x}, outside the bits \
                 TF Lite 2.{} defines ({:#x})",
                release.minor, release.flag_mask
            ),
            Some(0),
        );
    }
    opts.set_num_threads(threads);
    let setup = XnnpackSetup {
        source: OptionsSource::LibraryDefault(release.abi),
        flags: Some(flags),
        num_threads: threads,
    };
    tracing::info!("TF Lite {version}: XNNPACK delegate with {setup}");
    (opts, setup)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::{c_char, c_int, c_void};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// The 2.21 struct transcribed from the header, to check the size we use.
    #[repr(C)]
    struct Options221 {
        num_threads: i32,
        runtime_flags: u32,
        flags: u32,
        weights_cache: *mut c_void,
        handle_variable_ops: bool,
        weight_cache_file_path: *const c_char,
        weight_cache_file_descriptor: c_int,
        weight_cache_provider: *mut c_void,
    }

    // Stand-ins for the libraries' functions: compiled by rustc with the C
    // ABI, they return exactly as the C functions do, so calling them through
    // `call_default` exercises the real register and hidden-pointer paths on
    // the machine running the test (x86_64 here, aarch64 under qemu).
    extern "C" fn default_26() -> Options8 {
        Options8 {
            num_threads: 0,
            flags: 0x3,
        }
    }

    extern "C" fn default_221() -> Options221 {
        Options221 {
            num_threads: 0,
            runtime_flags: 0x5a5a_0000,
            flags: 0x3,
            weights_cache: std::ptr::null_mut(),
            handle_variable_ops: true,
            weight_cache_file_path: std::ptr::null(),
            weight_cache_file_descriptor: -1,
            weight_cache_provider: std::ptr::null_mut(),
        }
    }

    extern "C" fn default_26_garbage() -> Options8 {
        Options8 {
            num_threads: 7,
            flags: 0xdead_beef,
        }
    }

    static UNKNOWN_CALLED: AtomicBool = AtomicBool::new(false);
    extern "C" fn default_unknown() -> Options8 {
        UNKNOWN_CALLED.store(true, Ordering::SeqCst);
        Options8 {
            num_threads: 0,
            flags: 0,
        }
    }

    fn raw<T>(f: extern "C" fn() -> T) -> RawFn {
        // SAFETY: only the pointer's type changes; `call_default` calls it
        // back with the matching return type.
        unsafe { std::mem::transmute::<extern "C" fn() -> T, RawFn>(f) }
    }

    #[test]
    fn version_decides_the_convention() {
        assert_eq!(options_abi("2.6.0"), Some(OptionsAbi::InRegister));
        assert_eq!(options_abi("2.6.5"), Some(OptionsAbi::InRegister));
        let indirect = Some(OptionsAbi::Indirect {
            size: 56,
            flags_offset: 8,
        });
        assert_eq!(options_abi("2.21.0"), indirect);
        assert_eq!(options_abi("2.21.1-rc0"), indirect);
        // Releases whose layout was not read, other majors, garbage: not guessed.
        for v in [
            "2.7.0", "2.9.1", "2.12.0", "2.20.0", "2.22.0", "3.21.0", "1.6.0", "", "x",
        ] {
            assert_eq!(options_abi(v), None, "{v}");
        }
    }

    #[test]
    fn the_known_2_21_size_matches_the_header() {
        assert_eq!(std::mem::size_of::<Options221>(), 56);
        assert_eq!(std::mem::offset_of!(Options221, flags), 8);
        assert_eq!(std::mem::size_of::<Options8>(), 8);
        assert!(std::mem::size_of::<XnnpackOptions>() >= 8 * 56);
        assert_eq!(std::mem::align_of::<XnnpackOptions>(), 16);
    }

    #[test]
    fn register_path_reads_the_returned_struct() {
        // SAFETY: `default_26` returns `Options8` by value, as 2.6 does.
        let (opts, setup) = unsafe { build_options("2.6.0", Some(raw(default_26)), 3) };
        assert_eq!(
            setup,
            XnnpackSetup {
                source: OptionsSource::LibraryDefault(OptionsAbi::InRegister),
                flags: Some(0x3),
                num_threads: 3,
            }
        );
        assert_eq!(opts.num_threads(), 3);
        assert_eq!(opts.u32_at(4), 0x3);
        assert!(opts.bytes()[8..].iter().all(|&b| b == 0));
    }

    #[test]
    fn hidden_pointer_path_copies_the_whole_struct() {
        // SAFETY: `default_221` returns the 56-byte 2.21 struct.
        let (opts, setup) = unsafe { build_options("2.21.0", Some(raw(default_221)), 2) };
        assert_eq!(
            setup.source,
            OptionsSource::LibraryDefault(OptionsAbi::Indirect {
                size: 56,
                flags_offset: 8
            })
        );
        assert_eq!(setup.flags, Some(0x3));
        assert_eq!(opts.num_threads(), 2);
        assert_eq!(opts.u32_at(4), 0x5a5a_0000, "runtime_flags");
        assert_eq!(opts.bytes()[24], 1, "handle_variable_ops");
        assert_eq!(i32::from_ne_bytes(opts.word(40)), -1, "file descriptor");
        assert!(opts.bytes()[56..].iter().all(|&b| b == 0));
        assert!(setup.to_string().contains("hidden pointer"), "{setup}");
        assert!(setup.to_string().contains("QS8 QU8"), "{setup}");
    }

    #[test]
    fn implausible_defaults_are_not_passed_on() {
        // SAFETY: returns `Options8` by value.
        let (opts, setup) = unsafe { build_options("2.6.0", Some(raw(default_26_garbage)), 1) };
        assert!(
            matches!(&setup.source, OptionsSource::Zeroed(why) if why.contains("0xdeadbeef")),
            "{setup:?}"
        );
        assert_eq!(opts.num_threads(), 1);
        assert!(opts.bytes()[4..].iter().all(|&b| b == 0));
    }

    #[test]
    fn unknown_release_or_missing_symbol_gives_zeroed_options() {
        // SAFETY: the function is never called for an unknown release (asserted).
        let (opts, setup) = unsafe { build_options("2.15.0", Some(raw(default_unknown)), 4) };
        assert!(!UNKNOWN_CALLED.load(Ordering::SeqCst));
        assert!(
            matches!(&setup.source, OptionsSource::Zeroed(why) if why.contains("2.15.0")),
            "{setup:?}"
        );
        assert_eq!(setup.flags, None);
        assert_eq!(opts.num_threads(), 4);
        assert!(opts.bytes()[4..].iter().all(|&b| b == 0));

        // SAFETY: no function given.
        let (_, setup) = unsafe { build_options("2.21.0", None, 1) };
        assert!(
            matches!(&setup.source, OptionsSource::Zeroed(why) if why.contains("does not export")),
            "{setup:?}"
        );
    }
}
