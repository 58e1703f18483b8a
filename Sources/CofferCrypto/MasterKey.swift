internal import CSodium
import CofferCore

#if canImport(Glibc)
internal import Glibc
#elseif canImport(Darwin)
internal import Darwin
#endif

/// The 32-byte master key every other key is derived from.
///
/// It lives in a key file: raw 32 bytes (what `cofferd init` writes) or their base64 on one line (what an
/// operator can paste into a systemd credential or a Kubernetes secret). It is read only from a file path,
/// never from an environment variable or argv, and a file that its group or others can access is refused.
public struct MasterKey: Sendable {
    /// The key's length in bytes.
    public static let length = 32

    let bytes: SecretBytes

    init(bytes: SecretBytes) {
        precondition(bytes.count == Self.length)
        self.bytes = bytes
    }

    /// A fresh random key.
    public static func generate() -> MasterKey {
        MasterKey(bytes: SecureRandom.secret(length, guarded: true))
    }

    /// Reads and checks the key file at `path`.
    public static func load(from path: String) throws(CofferError) -> MasterKey {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let err = errno
            if err == ENOENT {
                throw CofferError(
                    .failedPrecondition,
                    "no key file at \(path); create one with: cofferd init --data-dir DIR"
                )
            }
            throw CofferError(.failedPrecondition, "cannot open key file \(path): \(SystemError(err))")
        }
        defer { close(fd) }

        // Checked on the open descriptor, not the path, so the file cannot be swapped between check and read.
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw CofferError(.failedPrecondition, "cannot stat key file \(path): \(SystemError(errno))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw CofferError(.failedPrecondition, "key file \(path) is not a regular file")
        }
        let mode = info.st_mode & 0o777
        guard mode & 0o077 == 0 else {
            throw CofferError(
                .failedPrecondition,
                "key file \(path) is open to its group or others (mode \(octal(mode))); fix it with: chmod 600 \(path) (on Kubernetes, set the secret volume's defaultMode to 0400)"
            )
        }
        let owner = info.st_uid
        guard owner == geteuid() || owner == 0 else {
            throw CofferError(
                .failedPrecondition,
                "key file \(path) is owned by uid \(owner), not by cofferd's uid \(geteuid()) or root; fix it with: chown \(geteuid()) \(path)"
            )
        }
        // The longest form we accept is base64 with a line ending; anything much larger is not a key file.
        let capacity = 128
        guard info.st_size <= capacity else {
            throw CofferError(.failedPrecondition, keyFormatMessage(path))
        }

        var readError: Int32 = 0
        var used = 0
        let raw = SecretBytes(count: capacity, guarded: true) { buffer in
            while used < capacity {
                let n = read(fd, buffer.baseAddress! + used, capacity - used)
                if n < 0 {
                    if errno == EINTR { continue }
                    readError = errno
                    return
                }
                if n == 0 { return }
                used += n
            }
        }
        if readError != 0 {
            throw CofferError(.failedPrecondition, "cannot read key file \(path): \(SystemError(readError))")
        }
        return try decode(raw, used: used, path: path)
    }

    private static func decode(_ raw: SecretBytes, used: Int, path: String) throws(CofferError) -> MasterKey {
        if used == length {
            return MasterKey(
                bytes: SecretBytes(count: length, guarded: true) { out in
                    raw.withUnsafeBytes { out.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
                }
            )
        }
        // Base64 on one line, with an optional trailing newline.
        var decodedLength = 0
        var ok = false
        let key = SecretBytes(count: length, guarded: true) { out in
            raw.withUnsafeBytes { text in
                var textLength = used
                while textLength > 0,
                    text[textLength - 1] == UInt8(ascii: "\n") || text[textLength - 1] == UInt8(ascii: "\r")
                {
                    textLength -= 1
                }
                let status = sodium_base642bin(
                    out.baseAddress!.assumingMemoryBound(to: UInt8.self),
                    length,
                    text.baseAddress!.assumingMemoryBound(to: CChar.self),
                    textLength,
                    nil,
                    &decodedLength,
                    nil,
                    sodium_base64_VARIANT_ORIGINAL
                )
                ok = status == 0 && decodedLength == length
            }
        }
        guard ok else { throw CofferError(.failedPrecondition, keyFormatMessage(path)) }
        return MasterKey(bytes: key)
    }

    private static func keyFormatMessage(_ path: String) -> String {
        "key file \(path) does not hold a key: expected 32 raw bytes or their base64 on one line"
    }

    /// Writes the key to a new file at `path` with mode 0600 and flushes it to disk. Never replaces a file.
    public func write(newFileAt path: String) throws(CofferError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            let err = errno
            if err == EEXIST {
                throw CofferError(
                    .alreadyExists,
                    "a key file already exists at \(path); cofferd never replaces a key"
                )
            }
            throw CofferError(.failedPrecondition, "cannot create key file \(path): \(SystemError(err))")
        }
        var failure: Int32 = 0
        if fchmod(fd, 0o600) != 0 { failure = errno }
        if failure == 0 {
            failure = bytes.withUnsafeBytes { buffer in
                var written = 0
                while written < buffer.count {
                    let n = Glibc.write(fd, buffer.baseAddress! + written, buffer.count - written)
                    if n < 0 {
                        if errno == EINTR { continue }
                        return errno
                    }
                    written += n
                }
                return 0
            }
        }
        if failure == 0, fsync(fd) != 0 { failure = errno }
        close(fd)
        if failure != 0 {
            unlink(path)
            throw CofferError(.failedPrecondition, "cannot write key file \(path): \(SystemError(failure))")
        }
        FileSystem.syncDirectory(containing: path)
    }
}

extension MasterKey: CustomStringConvertible {
    public var description: String { "MasterKey(<redacted>)" }
}

func octal(_ mode: mode_t) -> String {
    let digits = String(mode, radix: 8)
    return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
}

/// Small file-system helpers shared by the key file and the data directory.
public enum FileSystem {
    /// Flushes a directory entry to disk after a file was created in it, so a crash cannot lose the file.
    public static func syncDirectory(containing path: String) {
        var directory = path
        if let slash = directory.lastIndex(of: "/") {
            directory = slash == directory.startIndex ? "/" : String(directory[..<slash])
        } else {
            directory = "."
        }
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }
}
