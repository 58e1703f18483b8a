import Foundation

/// A fresh directory under the system's temporary folder, removed when released.
public final class TemporaryDirectory: @unchecked Sendable {
    public let path: String

    public init(prefix: String = "coffer-test") {
        var template = Array(
            (NSTemporaryDirectory() as NSString).appendingPathComponent("\(prefix).XXXXXX").utf8CString
        )
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(created != nil, "mkdtemp failed")
        path = String(cString: created!)
    }

    /// A path inside the directory.
    public func child(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Reads every regular file under `path`, recursively, for scanning what a component left on disk.
public func allFileBytes(under path: String) -> [(String, [UInt8])] {
    guard let names = FileManager.default.subpaths(atPath: path) else { return [] }
    return names.compactMap { name in
        let file = (path as NSString).appendingPathComponent(name)
        guard let data = FileManager.default.contents(atPath: file) else { return nil }
        return (name, Array(data))
    }
}

extension Collection where Element == UInt8 {
    /// Whether `needle` occurs in these bytes.
    public func contains(bytes needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, count >= needle.count else { return false }
        let haystack = Array(self)
        let first = needle[0]
        var index = 0
        let last = haystack.count - needle.count
        while index <= last {
            if haystack[index] == first, Array(haystack[index..<(index + needle.count)]) == needle { return true }
            index += 1
        }
        return false
    }
}

extension TemporaryDirectory {
    /// A data directory `data` (0700) inside this one holding a copy of a store fixture's `data.mdb` and
    /// `master.key` (git keeps no file modes: both are made 0600 here); returns its path.
    public func copyStoreFixture(_ fixture: URL) throws -> String {
        let data = child("data")
        try FileManager.default.createDirectory(
            atPath: data,
            withIntermediateDirectories: false,
            attributes: [.posixPermissions: 0o700]
        )
        for name in ["data.mdb", "master.key"] {
            try FileManager.default.copyItem(
                atPath: fixture.appendingPathComponent(name).path,
                toPath: data + "/" + name
            )
            chmod(data + "/" + name, 0o600)
        }
        return data
    }
}
