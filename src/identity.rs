//! Identities: ML-DSA-65 key pairs, the ids derived from them, and key files.
//!
//! # Ids
//! `MachineId` and `AgentId` are both `SHA-256("AUTONOMI_PEER_ID_V2:" ‖ public key)`; the machine
//! id comes from the machine key (one per host, persisted, shared by the host's agents), the
//! agent id from the agent key (portable between hosts; the agent's identity in the network).
//!
//! # Key format (version 1, 72 bytes)
//! Used both for key files and for the bytes of [`Keypair::to_bytes`] / `with_agent_key`:
//!
//! | offset | len | content                                             |
//! |--------|-----|-----------------------------------------------------|
//! | 0      | 4   | magic `b"x0xk"`                                     |
//! | 4      | 1   | format version, `1`                                 |
//! | 5      | 1   | algorithm, `1` = ML-DSA-65                          |
//! | 6      | 2   | reserved, zero                                      |
//! | 8      | 32  | the FIPS 204 key-generation seed ξ                  |
//! | 40     | 32  | SHA-256 of bytes 0..40 (detects truncation and rot) |
//!
//! The seed is the whole secret: ML-DSA-65 expands it deterministically into the key pair.

use std::fmt;
use std::fs::{self, File};
use std::io::{ErrorKind as IoErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use aws_lc_rs::digest::{self, SHA256};
use aws_lc_rs::signature::{
    KeyPair as _, PqdsaKeyPair, UnparsedPublicKey, ML_DSA_65, ML_DSA_65_SIGNING,
};

use crate::error::{Error, ErrorKind, Result};

/// Length of a [`MachineId`] or [`AgentId`] in bytes.
pub const ID_LEN: usize = 32;
/// Length of an ML-DSA-65 public key in bytes.
pub const PUBLIC_KEY_LEN: usize = 1952;
/// Length of an ML-DSA-65 signature in bytes.
pub const SIGNATURE_LEN: usize = 3309;
/// Length of a serialized key pair (see the module docs for the format).
pub const KEYPAIR_LEN: usize = 72;

const ID_DOMAIN: &[u8] = b"AUTONOMI_PEER_ID_V2:";
const KEY_MAGIC: &[u8; 4] = b"x0xk";
const KEY_VERSION: u8 = 1;
const KEY_ALG_ML_DSA_65: u8 = 1;
const SEED_LEN: usize = 32;
const SEED_OFFSET: usize = 8;
const CHECKSUM_OFFSET: usize = SEED_OFFSET + SEED_LEN;

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub struct $name(pub [u8; ID_LEN]);

        impl $name {
            /// The raw 32 bytes.
            pub fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }

            /// Lower-case hex, 64 characters.
            pub fn to_hex(&self) -> String {
                to_hex(&self.0)
            }

            /// Parses exactly 64 hex digits (either case).
            pub fn from_hex(text: &str) -> Result<Self> {
                id_from_hex(text).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Eight hex digits identify a peer in logs; the full id is noise.
                write!(f, concat!(stringify!($name), "({}…)"), &self.to_hex()[..8])
            }
        }
    };
}

define_id!(
    /// Identifies a machine (host): derived from its persisted machine key.
    MachineId
);
define_id!(
    /// Identifies an agent: derived from its agent key, portable between machines.
    AgentId
);

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

fn id_from_hex(text: &str) -> Result<[u8; ID_LEN]> {
    if text.len() != ID_LEN * 2 {
        return Err(Error::invalid_argument(format!(
            "invalid id: expected {} hex digits, got {} characters",
            ID_LEN * 2,
            text.chars().count()
        )));
    }
    let mut out = [0u8; ID_LEN];
    for (i, pair) in text.as_bytes().chunks_exact(2).enumerate() {
        let hi = hex_digit(pair[0]);
        let lo = hex_digit(pair[1]);
        match (hi, lo) {
            (Some(hi), Some(lo)) => out[i] = hi << 4 | lo,
            _ => {
                return Err(Error::invalid_argument(format!(
                    "invalid id: non-hex character at position {}",
                    if hi.is_none() { 2 * i } else { 2 * i + 1 }
                )))
            }
        }
    }
    Ok(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&SHA256);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// An ML-DSA-65 public key (1952 bytes).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey(Vec<u8>);

impl PublicKey {
    /// Wraps raw public key bytes; fails unless they are exactly [`PUBLIC_KEY_LEN`] long.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != PUBLIC_KEY_LEN {
            return Err(Error::invalid_argument(format!(
                "invalid public key: expected {PUBLIC_KEY_LEN} bytes, got {}",
                bytes.len()
            )));
        }
        Ok(Self(bytes.to_vec()))
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn id_bytes(&self) -> [u8; ID_LEN] {
        sha256(&[ID_DOMAIN, &self.0])
    }

    /// The [`MachineId`] of this key when it is a machine key.
    pub fn machine_id(&self) -> MachineId {
        MachineId(self.id_bytes())
    }

    /// The [`AgentId`] of this key when it is an agent key.
    pub fn agent_id(&self) -> AgentId {
        AgentId(self.id_bytes())
    }

    /// Whether `signature` is a valid ML-DSA-65 signature of `message` by this key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ML_DSA_65, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({:?})", self.agent_id())
    }
}

/// An ML-DSA-65 key pair, kept with the seed it was expanded from so it can be serialized.
pub struct Keypair {
    seed: [u8; SEED_LEN],
    signing: PqdsaKeyPair,
    public: PublicKey,
}

impl Keypair {
    /// A new random key pair.
    pub fn generate() -> Result<Self> {
        let mut seed = [0u8; SEED_LEN];
        aws_lc_rs::rand::fill(&mut seed)
            .map_err(|_| Error::new(ErrorKind::Crypto, "the system random source failed"))?;
        Self::from_seed(seed)
    }

    /// The key pair a FIPS 204 seed expands to (the simulator derives its agents' keys so).
    pub(crate) fn from_seed(seed: [u8; SEED_LEN]) -> Result<Self> {
        let signing = PqdsaKeyPair::from_seed(&ML_DSA_65_SIGNING, &seed).map_err(|e| {
            Error::new(
                ErrorKind::Crypto,
                format!("ML-DSA-65 key expansion failed: {e}"),
            )
        })?;
        let public = PublicKey(signing.public_key().as_ref().to_vec());
        Ok(Self {
            seed,
            signing,
            public,
        })
    }

    /// Serializes the key pair (72 bytes, format in the module docs). The result is secret.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(KEYPAIR_LEN);
        out.extend_from_slice(KEY_MAGIC);
        out.extend_from_slice(&[KEY_VERSION, KEY_ALG_ML_DSA_65, 0, 0]);
        out.extend_from_slice(&self.seed);
        let checksum = sha256(&[&out]);
        out.extend_from_slice(&checksum);
        out
    }

    /// Parses bytes made by [`Keypair::to_bytes`]. Any damage is an error, never a different key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |why: &str| Error::invalid_argument(format!("invalid key pair bytes: {why}"));
        if bytes.len() != KEYPAIR_LEN {
            return Err(bad(&format!(
                "expected {KEYPAIR_LEN} bytes, got {}",
                bytes.len()
            )));
        }
        if &bytes[..4] != KEY_MAGIC {
            return Err(bad("missing the x0xk magic (not an x0x key)"));
        }
        if bytes[4] != KEY_VERSION {
            return Err(bad(&format!("unsupported format version {}", bytes[4])));
        }
        if bytes[5] != KEY_ALG_ML_DSA_65 || bytes[6..8] != [0, 0] {
            return Err(bad(&format!("unsupported algorithm {}", bytes[5])));
        }
        if sha256(&[&bytes[..CHECKSUM_OFFSET]]) != bytes[CHECKSUM_OFFSET..] {
            return Err(bad("checksum mismatch: the key is damaged"));
        }
        let mut seed = [0u8; SEED_LEN];
        seed.copy_from_slice(&bytes[SEED_OFFSET..CHECKSUM_OFFSET]);
        Self::from_seed(seed)
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `message` (ML-DSA-65, hedged): [`SIGNATURE_LEN`] bytes.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let mut signature = vec![0u8; SIGNATURE_LEN];
        let len = self
            .signing
            .sign(message, &mut signature)
            .map_err(|_| Error::new(ErrorKind::Crypto, "ML-DSA-65 signing failed"))?;
        signature.truncate(len);
        Ok(signature)
    }
}

impl Clone for Keypair {
    fn clone(&self) -> Self {
        Self::from_seed(self.seed).expect("re-expanding a seed that expanded before cannot fail")
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the seed.
        write!(f, "Keypair({:?})", self.public)
    }
}

/// `$HOME/.x0x/machine.key`, the default machine key file.
pub fn default_machine_key_path() -> Result<PathBuf> {
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".x0x").join("machine.key")),
        _ => Err(Error::new(
            ErrorKind::Io,
            "cannot locate the default machine key: HOME is not set; pass a path with with_machine_key()",
        )),
    }
}

/// Loads the key pair stored at `path`, or creates one there if the file does not exist.
///
/// Creation is atomic (a temporary file is hard-linked into place, so a concurrent creator never
/// sees a half-written file and nobody's key is overwritten) and the file gets mode 0600. A file
/// that exists but is unreadable or damaged is an error and is left as it is.
pub fn load_or_create_key_file(path: &Path) -> Result<Keypair> {
    match read_key_file(path) {
        Err(e) if e.kind() == IoErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::io(
                format_args!("cannot read key file {}", path.display()),
                &e,
            ))
        }
        Ok(bytes) => return parse_key_file(path, &bytes),
    }
    let keypair = Keypair::generate()?;
    match write_new_key_file(path, &keypair.to_bytes()) {
        Ok(()) => Ok(keypair),
        // Another process created it between our read and our link: theirs wins.
        Err(e) if e.kind() == IoErrorKind::AlreadyExists => {
            let bytes = read_key_file(path).map_err(|e| {
                Error::io(format_args!("cannot read key file {}", path.display()), &e)
            })?;
            parse_key_file(path, &bytes)
        }
        Err(e) => Err(Error::io(
            format_args!("cannot create key file {}", path.display()),
            &e,
        )),
    }
}

fn read_key_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(KEYPAIR_LEN);
    // One byte more than a key lets us tell "too long" from "exactly right" without reading a
    // huge file that somebody pointed us at by mistake.
    File::open(path)?
        .take(KEYPAIR_LEN as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn parse_key_file(path: &Path, bytes: &[u8]) -> Result<Keypair> {
    Keypair::from_bytes(bytes).map_err(|e| {
        Error::new(
            ErrorKind::Corrupt,
            format!(
                "key file {} is corrupt ({}); it was left untouched: move it aside to create a new identity",
                path.display(),
                e.message().trim_start_matches("invalid key pair bytes: ")
            ),
        )
    })
}

fn write_new_key_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    crate::private_files::dir_builder().create(dir)?;
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(IoErrorKind::InvalidInput, "the path names no file"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    // Unique per call, not just per process: two agents of one process may create the key at once.
    static NEXT_TMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = NEXT_TMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tmp_name.push(format!(".tmp-{}-{seq}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = crate::private_files::open_options()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        // link() refuses to replace an existing file, unlike rename().
        fs::hard_link(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    let _ = fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn id_is_sha256_of_domain_and_public_key() {
        let kp = Keypair::generate().unwrap();
        let expected = sha256(&[b"AUTONOMI_PEER_ID_V2:", kp.public_key().as_bytes()]);
        assert_eq!(kp.public_key().agent_id().0, expected);
        assert_eq!(kp.public_key().machine_id().0, expected);
        assert_eq!(kp.public_key().as_bytes().len(), PUBLIC_KEY_LEN);
    }

    #[test]
    fn id_matches_an_independent_sha256() {
        // SHA-256("AUTONOMI_PEER_ID_V2:" ‖ [0; 1952]) computed independently with Python's hashlib.
        let key = PublicKey(vec![0u8; PUBLIC_KEY_LEN]);
        assert_eq!(
            key.agent_id().to_hex(),
            "64750714b20ec2838270ed9a1d0b69954997eea2d290385f0786855425fa8f8e"
        );
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let id = AgentId([0xab; 32]);
        assert_eq!(AgentId::from_hex(&id.to_hex()).unwrap(), id);
        assert_eq!(AgentId::from_hex(&id.to_hex().to_uppercase()).unwrap(), id);
        let short = AgentId::from_hex("abc").unwrap_err();
        assert_eq!(short.kind(), ErrorKind::InvalidArgument);
        assert!(
            short.message().contains("expected 64 hex digits, got 3"),
            "{short}"
        );
        let bad = AgentId::from_hex(&format!("{}zz", "0".repeat(62))).unwrap_err();
        assert!(bad.message().contains("position 62"), "{bad}");
    }

    #[test]
    fn keypair_bytes_round_trip_and_sign() {
        let kp = Keypair::generate().unwrap();
        let bytes = kp.to_bytes();
        assert_eq!(bytes.len(), KEYPAIR_LEN);
        let back = Keypair::from_bytes(&bytes).unwrap();
        assert_eq!(back.public_key(), kp.public_key());
        let sig = back.sign(b"hello").unwrap();
        assert_eq!(sig.len(), SIGNATURE_LEN);
        assert!(kp.public_key().verify(b"hello", &sig));
        assert!(!kp.public_key().verify(b"hellO", &sig));
    }

    #[test]
    fn damaged_keypair_bytes_are_refused() {
        let bytes = Keypair::generate().unwrap().to_bytes();
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x01;
            let err = Keypair::from_bytes(&damaged).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "byte {i}: {err}");
        }
        let err = Keypair::from_bytes(&bytes[..71]).unwrap_err();
        assert!(err.message().contains("expected 72 bytes, got 71"), "{err}");
    }

    #[test]
    fn key_file_round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("machine.key");
        let first = load_or_create_key_file(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = load_or_create_key_file(&path).unwrap();
        assert_eq!(
            first.public_key().machine_id(),
            second.public_key().machine_id()
        );
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary file left behind");
    }

    #[test]
    fn threads_creating_one_key_file_at_once_all_get_the_same_key() {
        // Regression: the temporary file was named per process, so two agents of one process
        // building at once on a fresh machine removed each other's temporary file.
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("machine.key");
            let barrier = std::sync::Barrier::new(8);
            let ids: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            load_or_create_key_file(&path).map(|k| k.public_key().machine_id())
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let first = ids[0].clone().unwrap();
            for id in ids {
                assert_eq!(id.unwrap(), first);
            }
            assert_eq!(
                fs::read_dir(dir.path()).unwrap().count(),
                1,
                "temporary file left behind"
            );
        }
    }

    #[test]
    fn corrupt_key_file_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("machine.key");
        load_or_create_key_file(&path).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes[20] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let err = load_or_create_key_file(&path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains("checksum mismatch"), "{err}");
        assert!(err.message().contains(&path.display().to_string()), "{err}");
        assert_eq!(fs::read(&path).unwrap(), bytes, "corrupt file was modified");
    }

    #[test]
    fn unwritable_key_path_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        fs::write(&blocker, b"x").unwrap();
        let err = load_or_create_key_file(&blocker.join("machine.key")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert!(err.message().contains("Not a directory"), "{err}");
    }
}
