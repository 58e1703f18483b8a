import CofferCore
import Foundation

// How the command lines print what they show: aligned tables for people, JSON for programs.

/// "-" for a missing or empty cell.
public func dash(_ text: String?) -> String { text.map { $0.isEmpty ? "-" : $0 } ?? "-" }

/// Prints `value` as JSON with sorted keys.
public func printJSON(_ value: Any, compact: Bool = false) {
    let options: JSONSerialization.WritingOptions =
        compact ? [.sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
    let data = (try? JSONSerialization.data(withJSONObject: value, options: options)) ?? Data("null".utf8)
    FileHandle.standardOutput.write(data + Data("\n".utf8))
}

/// Prints rows as columns; the first row is the header.
public func printTable(_ rows: [[String]]) {
    guard let header = rows.first else { return }
    var widths = header.map(\.count)
    for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
    for row in rows {
        let line = row.enumerated().map { i, cell in
            i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
        print(line)
    }
}

extension KeyStatus {
    /// The table `coffer key status` and `cofferd status` print.
    public var rows: [[String]] {
        var rows = [["GEN", "KEY ID", "STATE", "FIELDS", "RECORDS", "LIVE TOKENS", "CREATED", "SEALED WRITES UNTIL"]]
        for g in generations {
            rows.append([
                "\(g.number)", g.keyID.hex, g.state.rawValue, "\(g.fields)", "\(g.records)", "\(g.liveTokens)",
                g.created.formatted(.iso8601), dash(g.sealedWritesUntil?.formatted(.iso8601)),
            ])
        }
        return rows
    }

    /// One line on the re-encryption.
    public var progressLine: String {
        let r = reencryption
        let percent = r.recordsTotal == 0 ? 100 : r.recordsCurrent * 100 / r.recordsTotal
        return r.done && r.recordsCurrent == r.recordsTotal
            ? "re-encryption: done (\(r.recordsTotal) records under the active generation)"
            : "re-encryption: \(r.done ? "done" : "running"), \(r.recordsCurrent) of \(r.recordsTotal) records under the active generation (\(percent)%)"
    }

    /// The same as JSON.
    public var json: [String: Any] {
        [
            "generations": generations.map { g -> [String: Any] in
                [
                    "number": g.number, "key_id": g.keyID.hex, "state": g.state.rawValue, "fields": g.fields,
                    "records": g.records, "live_tokens": g.liveTokens, "created": g.created.formatted(.iso8601),
                    "superseded": g.superseded?.formatted(.iso8601) ?? NSNull(),
                    "retired": g.retired?.formatted(.iso8601) ?? NSNull(),
                    "sealed_writes_until": g.sealedWritesUntil?.formatted(.iso8601) ?? NSNull(),
                ]
            },
            "reencryption": [
                "done": reencryption.done, "records_current": reencryption.recordsCurrent,
                "records_total": reencryption.recordsTotal,
            ],
        ]
    }
}
