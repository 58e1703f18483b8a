internal import CSodium

#if canImport(Glibc)
internal import Glibc
#elseif canImport(Darwin)
internal import Darwin
#endif

/// Bytes that are secret: a key, a connection's value, a token.
///
/// They live outside Swift's heap and are zeroed when released, compare in constant time, and print as
/// `<redacted>` through `description`, `debugDescription` and reflection. Long-lived keys use `guarded`
/// storage: `sodium_malloc`, locked into RAM where the system allows it, with guard pages. Short-lived values
/// (a token being checked, a value on its way to a client) are not locked one by one: `mlock` per allocation
/// costs two system calls that split the process's memory map, more than the rest of a Get together, and the
/// same bytes pass through the socket's buffers anyway; cofferd's memory stays out of core dumps, and swap
/// should be off or encrypted on its host. The contents are fixed once initialised; read them only inside
/// `withUnsafeBytes`.
public final class SecretBytes: @unchecked Sendable {
    // Safe to share: the storage is written only by the initialiser and freed only by deinit.
    private let pointer: UnsafeMutableRawPointer
    /// The number of secret bytes.
    public let count: Int
    private let guarded: Bool

    /// Allocates `count` zeroed bytes and lets `initialize` fill them.
    public init(
        count: Int,
        guarded: Bool = false,
        initialize: (UnsafeMutableRawBufferPointer) throws -> Void = { _ in }
    ) rethrows {
        Sodium.ensureReady()
        let size = max(count, 1)
        self.count = count
        self.guarded = guarded
        if guarded {
            guard let memory = sodium_malloc(size) else { fatalError("sodium_malloc failed: out of memory") }
            pointer = memory
        } else {
            guard let memory = malloc(size) else { fatalError("malloc failed: out of memory") }
            pointer = memory
        }
        sodium_memzero(pointer, size)
        do {
            try initialize(UnsafeMutableRawBufferPointer(start: pointer, count: count))
        } catch {
            release()
            throw error
        }
    }

    /// Copies `bytes` into secret storage. The caller remains responsible for wiping its own copy.
    public convenience init(copying bytes: some Collection<UInt8>, guarded: Bool = false) {
        self.init(count: bytes.count, guarded: guarded) { buffer in
            _ = buffer.initializeMemory(as: UInt8.self, from: bytes)
        }
    }

    /// Copies the UTF-8 of `text` into secret storage.
    public convenience init(utf8 text: String) {
        var text = text
        let bytes = text.withUTF8 { Array($0) }
        self.init(copying: bytes)
    }

    deinit { release() }

    private func release() {
        let size = max(count, 1)
        if guarded {
            sodium_free(pointer)  // zeroes before freeing
        } else {
            sodium_memzero(pointer, size)
            free(pointer)
        }
    }

    /// Reads the secret bytes. Do not let the buffer escape the closure.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    /// Compares in constant time for equal lengths.
    public func constantTimeEquals(_ other: SecretBytes) -> Bool {
        guard count == other.count else { return false }
        return sodium_memcmp(pointer, other.pointer, count) == 0
    }

    /// The bytes as a Swift array, for handing a value to its authorised recipient (an encoder writing a
    /// response). The copy is ordinary memory: keep its life short.
    public func copyBytes() -> [UInt8] {
        withUnsafeBytes { Array($0) }
    }
}

extension SecretBytes: Equatable {
    public static func == (lhs: SecretBytes, rhs: SecretBytes) -> Bool { lhs.constantTimeEquals(rhs) }
}

extension SecretBytes: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String { "<redacted>" }
    public var debugDescription: String { "SecretBytes(<redacted>, \(count) bytes)" }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .class) }
}
