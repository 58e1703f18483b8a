import CofferClient
import CofferCore
import CofferCrypto
import CofferStore
import CofferTestSupport
import Foundation
import Testing

/// `cofferd backup` while cofferd serves Gets and writes, `cofferd restore` into a new directory, `cofferd verify`,
/// and a cofferd on the restored store serving the same values to the same token.
@Suite struct BackupCLITests {
    @Test func backupWhileServingRestoreVerifyAndServe() throws {
        let dir = TemporaryDirectory(prefix: "backup")
        let daemon = try CofferdProcess(dir: dir)
        let canary = Canary("backed-up")
        let admin = try CofferAdminClient(socketPath: daemon.adminSocket)
        for n in 0..<50 {
            try admin.put(
                try ConnectionRef(parsing: "generic/aws-c\(n)"),
                values: [try FieldName("secret"): SecretBytes(utf8: "\(canary.text)-\(n)")]
            )
            try admin.grant(try WorkflowName("deploy"), try ConnectionRef(parsing: "generic/aws-c\(n)"))
        }
        let token = try admin.issueToken(for: try WorkflowName("deploy"), ttl: .seconds(3600)).token
        let tokenText = token.withUnsafeBytes { String(decoding: $0, as: UTF8.self) }

        // Gets and writes go on while the backup is taken.
        let stop = Flag()
        let load = Thread {
            let worker = try? CofferWorkerClient(socketPath: daemon.workerSocket)
            let writer = try? CofferAdminClient(socketPath: daemon.adminSocket)
            var n = 0
            while !stop.isSet {
                _ = try? worker?.get(try ConnectionRef(parsing: "generic/aws-c\(n % 50)"), token: token)
                _ = try? writer?.put(
                    try ConnectionRef(parsing: "generic/http-during-\(n)"),
                    values: [try FieldName("v"): SecretBytes(utf8: "x")]
                )
                n += 1
            }
            stop.done()
        }
        load.start()
        usleep(200_000)
        let file = dir.child("coffer.backup")
        let backup = try BuiltProducts.run("cofferd", ["backup", "--data-dir", daemon.dataDirectory, "--to", file])
        stop.set()
        stop.waitDone()
        #expect(backup.status == 0, "\(backup.stderr)")
        #expect(backup.stdout.contains("50 grants"))
        #expect(daemon.stop() == 0)

        let restoredDirectory = dir.child("restored")
        try FileManager.default.createDirectory(atPath: restoredDirectory, withIntermediateDirectories: false)
        chmod(restoredDirectory, 0o700)
        let key = restoredDirectory + "/master.key"
        try FileManager.default.copyItem(atPath: daemon.dataDirectory + "/master.key", toPath: key)
        let restore = try BuiltProducts.run("cofferd", ["restore", "--data-dir", restoredDirectory, "--from", file])
        #expect(restore.status == 0, "\(restore.stderr)")
        let verify = try BuiltProducts.run("cofferd", ["verify", "--data-dir", restoredDirectory])
        #expect(verify.status == 0, "\(verify.stderr)")
        let again = try BuiltProducts.run("cofferd", ["restore", "--data-dir", restoredDirectory, "--from", file])
        #expect(again.status == 4 && again.stderr.contains("holds a store already"))

        let restored = try CofferdProcess(dir: dir, name: "restored", dataDirectory: restoredDirectory)
        for n in [0, 17, 49] {
            let got = try restored.coffer(["get", "generic/aws-c\(n)", "--field", "secret"], token: tokenText)
            #expect(got.status == 0 && got.stdout == "\(canary.text)-\(n)", "\(got.stderr)")
        }
        #expect(restored.stop() == 0)
        let printed = backup.stdout + backup.stderr + restore.stdout + restore.stderr + verify.stdout + verify.stderr
        #expect(!canary.occurs(in: printed) && !printed.contains(tokenText))
        #expect(!canary.occurs(in: try Array(Data(contentsOf: URL(fileURLWithPath: file)))))
    }

    /// `cofferd backup` and `cofferd verify` open the store beside a serving cofferd: a verification compares each
    /// table with the summary of the snapshot it scans, not with the metadata read when the store opened.
    @Test func aStoreOpenedBesideAServingCofferdVerifiesTheSnapshotItScans() throws {
        let dir = TemporaryDirectory(prefix: "beside")
        let daemon = try CofferdProcess(dir: dir)
        let admin = try CofferAdminClient(socketPath: daemon.adminSocket)
        let secret = [try FieldName("key"): SecretBytes(utf8: "value")]
        try admin.put(try ConnectionRef(parsing: "generic/aws-first"), values: secret)
        let beside = try DataDirectory(daemon.dataDirectory).open(access: .unverified)
        defer { beside.close() }
        try admin.put(try ConnectionRef(parsing: "generic/aws-second"), values: secret)
        try admin.grant(try WorkflowName("deploy"), try ConnectionRef(parsing: "generic/aws-second"))
        #expect(try beside.verificationProblems().map(\.message) == [])
        #expect(try beside.status().connections == 2)
        #expect(daemon.stop() == 0)
    }

    /// `cofferd status`, `verify` and `backup`, each run again and again beside a cofferd that overwrites one
    /// connection and serves Gets of it without pause: none may take the other process's writes for alterations.
    @Test func theOfflineToolsBesideAWritingCofferdRaiseNoFalseAlarm() throws {
        let dir = TemporaryDirectory(prefix: "beside")
        let daemon = try CofferdProcess(dir: dir)
        let admin = try CofferAdminClient(socketPath: daemon.adminSocket)
        let ref = try ConnectionRef(parsing: "generic/aws-busy")
        try admin.put(ref, values: [try FieldName("v"): SecretBytes(utf8: "0")])
        try admin.grant(try WorkflowName("deploy"), ref)
        let token = try admin.issueToken(for: try WorkflowName("deploy"), ttl: .seconds(3600)).token
        let stop = Flag()
        let load = Thread {
            let worker = try? CofferWorkerClient(socketPath: daemon.workerSocket)
            let writer = try? CofferAdminClient(socketPath: daemon.adminSocket)
            var n = 0
            while !stop.isSet {
                n += 1
                _ = try? writer?.overwrite(ref, values: [try FieldName("v"): SecretBytes(utf8: "\(n)")])
                for _ in 0..<4 { _ = try? worker?.get(ref, token: token) }
            }
            stop.done()
        }
        load.start()
        var alarms: [String] = []
        for round in 0..<8 {
            for tool in [["status"], ["verify"], ["backup", "--to", dir.child("b\(round)")]] {
                let run = try BuiltProducts.run(
                    "cofferd",
                    [tool[0], "--data-dir", daemon.dataDirectory] + tool.dropFirst()
                )
                if run.status != 0 { alarms.append("\(tool[0]): \(run.status) \(run.stderr)") }
            }
        }
        stop.set()
        stop.waitDone()
        #expect(alarms == [])
        #expect(daemon.stop() == 0)
    }
}

/// A stop signal for the load thread, and its acknowledgement.
private final class Flag: @unchecked Sendable {
    private let condition = NSCondition()
    private var stopped = false
    private var finished = false

    var isSet: Bool { condition.withLock { stopped } }
    func set() { condition.withLock { stopped = true } }
    func done() {
        condition.withLock {
            finished = true
            condition.broadcast()
        }
    }
    func waitDone() {
        condition.withLock { while !finished { condition.wait() } }
    }
}
