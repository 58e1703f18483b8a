import Foundation
import Synchronization

/// The checks of `FieldFormat`: each answers why a value does not fit, or nil. The reason never quotes the
/// value, which may be secret.
enum FieldFormats {
    static func problem(_ value: String, format: FieldFormat) -> String? {
        switch format {
        case .text, .template: textProblem(value)
        case .httpsURL: urlProblem(value)
        case .pem: pemProblem(value, privateKey: false)
        case .privateKey: pemProblem(value, privateKey: true)
        case .json:
            (try? JSONSerialization.jsonObject(with: Data(value.utf8))) is [String: Any] ? nil : "must be a JSON object"
        case .serviceAccountKey: serviceAccountKeyProblem(value)
        case .knownHosts: knownHostsProblem(value)
        }
    }

    /// Printable text, one line: no control characters but tab (a newline in a header would start another).
    static func textProblem(_ value: String) -> String? {
        if value.isEmpty { return "must not be empty" }
        if value.unicodeScalars.contains(where: { ($0.value < 0x20 && $0 != "\t") || $0.value == 0x7f }) {
            return "must be one line of printable text (no control characters)"
        }
        return nil
    }

    static func urlProblem(_ value: String) -> String? {
        let reason = "must be an https URL (http only to a loopback address), without user info or fragment"
        if textProblem(value) != nil || value.contains(" ") { return reason }
        guard let url = URLComponents(string: value), let scheme = url.scheme?.lowercased(),
            let host = url.host, !host.isEmpty, url.user == nil, url.password == nil, url.fragment == nil
        else { return reason }
        switch scheme {
        case "https": return nil
        case "http": return ["127.0.0.1", "localhost", "::1", "[::1]"].contains(host.lowercased()) ? nil : reason
        default: return reason
        }
    }

    /// One or more PEM blocks whose bodies are base64; a private key's label says so.
    static func pemProblem(_ value: String, privateKey: Bool) -> String? {
        let what = privateKey ? "a PEM or OpenSSH private key" : "PEM (-----BEGIN ...----- blocks)"
        var lines = value.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }[...]
        var blocks = 0
        while let line = lines.popFirst() {
            if line.isEmpty { continue }
            guard line.hasPrefix("-----BEGIN "), line.hasSuffix("-----") else { return "must be \(what)" }
            let label = line.dropFirst(11).dropLast(5)
            if privateKey && !label.hasSuffix("PRIVATE KEY") { return "must be \(what)" }
            var body = ""
            var ended = false
            while let next = lines.popFirst() {
                if next == "-----END \(label)-----" {
                    ended = true
                    break
                }
                if next.contains(":") { continue }  // RFC 1421 headers of an encrypted key
                body += next
            }
            guard ended, !body.isEmpty, Data(base64Encoded: body) != nil else { return "must be \(what)" }
            blocks += 1
        }
        return blocks > 0 ? nil : "must be \(what)"
    }

    static func serviceAccountKeyProblem(_ value: String) -> String? {
        let reason =
            "must be a service account's JSON key (type service_account, client_email, private_key_id and a PEM private_key)"
        guard let object = (try? JSONSerialization.jsonObject(with: Data(value.utf8))) as? [String: Any],
            object["type"] as? String == "service_account",
            let email = object["client_email"] as? String, email.contains("@"),
            let keyID = object["private_key_id"] as? String, !keyID.isEmpty,
            let key = object["private_key"] as? String, pemProblem(key, privateKey: true) == nil
        else { return reason }
        return nil
    }

    /// known_hosts lines: `[marker] hosts keytype base64-key [comment]`, comments and blank lines allowed.
    static func knownHostsProblem(_ value: String) -> String? {
        var entries = 0
        for line in value.split(whereSeparator: \.isNewline) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            var parts = trimmed.split(whereSeparator: { $0 == " " || $0 == "\t" })[...]
            if parts.first?.hasPrefix("@") == true { parts = parts.dropFirst() }
            guard parts.count >= 3, Data(base64Encoded: String(parts[parts.startIndex + 2])) != nil else {
                return "must be known_hosts lines (hosts, key type, base64 key)"
            }
            entries += 1
        }
        return entries > 0 ? nil : "must hold at least one known_hosts line"
    }

    /// Whether the whole of `value` matches `pattern`.
    static func matches(_ value: String, pattern: String) -> Bool {
        guard let regex = compiled(pattern) else { return false }
        let range = NSRange(value.startIndex..., in: value)
        return regex.firstMatch(in: value, range: range) != nil
    }

    /// Each pattern compiled once: a registry holds a few dozen, and every write checks some.
    private static let cache = Mutex<[String: NSRegularExpression]>([:])

    private static func compiled(_ pattern: String) -> NSRegularExpression? {
        if let regex = cache.withLock({ $0[pattern] }) { return regex }
        guard let regex = try? NSRegularExpression(pattern: "\\A(?:" + pattern + ")\\z") else { return nil }
        cache.withLock { $0[pattern] = regex }
        return regex
    }
}
