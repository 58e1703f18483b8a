internal import CSodium

/// libsodium must be initialised once before any other call; `sodium_init` is safe to call again.
enum Sodium {
    static let ready: Void = {
        precondition(sodium_init() >= 0, "libsodium could not be initialised")
    }()

    @inline(__always) static func ensureReady() { _ = ready }
}

/// Random bytes from the operating system's generator, through libsodium.
public enum SecureRandom {
    /// `count` random bytes; for public values such as ids and nonces.
    public static func bytes(_ count: Int) -> [UInt8] {
        Sodium.ensureReady()
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { buffer in
            if let base = buffer.baseAddress { randombytes_buf(base, buffer.count) }
        }
        return out
    }

    /// `count` random bytes that are secret, in locked memory.
    public static func secret(_ count: Int, guarded: Bool = false) -> SecretBytes {
        SecretBytes(count: count, guarded: guarded) { buffer in
            if let base = buffer.baseAddress { randombytes_buf(base, buffer.count) }
        }
    }
}

/// Whether this process can lock secret memory into RAM.
public enum SecureMemory {
    /// Tries to lock a page. `sodium_malloc` silently falls back to unlocked memory when locking fails
    /// (RLIMIT_MEMLOCK too low, no CAP_IPC_LOCK), so the daemon reports this once at start.
    public static func canLock() -> Bool {
        Sodium.ensureReady()
        let size = 4096
        guard let page = sodium_malloc(size) else { return false }
        defer { sodium_free(page) }
        guard sodium_mlock(page, size) == 0 else { return false }
        sodium_munlock(page, size)
        return true
    }
}

/// Comparison whose time does not depend on where two byte strings differ.
public enum ConstantTime {
    /// Whether `a` and `b` are equal; constant time for equal lengths (a length is not secret here).
    public static func equals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        guard !a.isEmpty else { return true }
        return a.withUnsafeBytes { a in
            b.withUnsafeBytes { b in sodium_memcmp(a.baseAddress, b.baseAddress, a.count) == 0 }
        }
    }
}

/// Unkeyed BLAKE2b, for checksums of public data (the audit journal's entries), never for secrets.
public enum Digest {
    public static func blake2b(_ bytes: [UInt8], length: Int = 16) -> [UInt8] {
        Sodium.ensureReady()
        return KeyRing.hash(bytes, length: length)
    }
}
