import CofferClient
import CofferConnections
import CofferCore
import CofferCrypto
import Foundation

/// Which variables `coffer exec` sets from which connections.
struct ExecPlan {
    var connections: [ConnectionRef]
    var singles: [(variable: String, ref: ConnectionRef, field: FieldName)]

    /// Every connection it reads, once each.
    var wanted: [ConnectionRef] {
        var seen = Set<ConnectionRef>()
        return (connections + singles.map(\.ref)).filter { seen.insert($0).inserted }
    }

    /// The variables: each connection's typed mapping, then each --env, which overrides it. Two connections
    /// mapping one variable, an --env given twice, a missing field or a NUL byte is an error.
    func variables(from fetched: [ConnectionRef: ConnectionValues]) throws(CofferError) -> [String: String] {
        var variables: [String: String] = [:]
        var source: [String: ConnectionRef] = [:]
        for ref in connections {
            guard let values = fetched[ref] else { throw CofferError(.internal, "connection \(ref) was not fetched") }
            for (name, value) in try values.environmentVariables() {
                if let other = source[name], other != ref {
                    throw CofferError(.invalidArgument, "both \(other) and \(ref) set \(name); name one with --env")
                }
                (variables[name], source[name]) = (value, ref)
            }
        }
        var explicit = Set<String>()
        for single in singles {
            guard explicit.insert(single.variable).inserted else {
                throw CofferError(.invalidArgument, "--env sets \(single.variable) twice")
            }
            guard let value = fetched[single.ref]?.text(of: single.field) else {
                throw CofferError(.notFound, "connection \(single.ref) has no text field \(single.field)")
            }
            variables[single.variable] = value
        }
        for (name, value) in variables where value.utf8.contains(0) {
            throw CofferError(
                .failedPrecondition,
                "the value for \(name) holds a NUL byte and cannot be in an environment"
            )
        }
        return variables
    }
}

/// `coffer exec --on-change`: runs the command as a child with the connections in its environment, watches
/// them, and restarts or signals it when one changes; stops it when one is deleted or no longer granted or the
/// token ends. Signals to coffer go to the child; coffer exits with the child's status when it exits by itself.
final class ExecSupervisor: @unchecked Sendable {
    enum Mode {
        case restart
        case signal(Int32)

        init(parsing text: String) throws(CofferError) {
            if text == "restart" {
                self = .restart
                return
            }
            let names: [String: Int32] = [
                "HUP": SIGHUP, "USR1": SIGUSR1, "USR2": SIGUSR2, "TERM": SIGTERM, "INT": SIGINT, "QUIT": SIGQUIT,
            ]
            guard text.hasPrefix("signal:"), let number = names[String(text.dropFirst(7)).uppercased()] else {
                throw CofferError(
                    .invalidArgument,
                    "--on-change takes restart or signal:NAME (HUP, USR1, USR2, TERM, INT, QUIT)"
                )
            }
            self = .signal(number)
        }
    }

    private let plan: ExecPlan
    private let step: StepOptions
    private let command: [String]
    private let mode: Mode
    // Guarded by `condition`.
    private let condition = NSCondition()
    private var child: Process?
    private var fetched: [ConnectionRef: ConnectionValues] = [:]
    private var failure: CofferError?
    private var exited: Int32?
    private var changed = false
    /// The watch's first event came (or it failed to start).
    private var watching = false

    init(plan: ExecPlan, step: StepOptions, command: [String], mode: Mode) {
        self.plan = plan
        self.step = step
        self.command = command
        self.mode = mode
    }

    /// Runs the command until it exits by itself (its status) or the watch fails (the error).
    func run() throws(CofferError) -> Int32 {
        let token = try step.token()
        Thread { self.watch(token: token) }.start()
        let startFailure: CofferError? = condition.withLock {
            while !watching { condition.wait() }
            return failure
        }
        if let startFailure { throw startFailure }
        // Fetched after the watch started: a change in between comes as an event too (a spare restart).
        let values = try step.fetch(plan.wanted)
        condition.withLock { fetched = values }
        try spawn()
        forwardSignals()
        return try supervise()
    }

    /// Waits for the child's exit, a change or a failure, and acts on each.
    private func supervise() throws(CofferError) -> Int32 {
        while true {
            let (status, failed, change) = condition.withLock {
                while exited == nil && failure == nil && !changed { condition.wait() }
                defer { changed = false }
                return (exited, failure, changed)
            }
            if let failed {
                stopChild()
                throw failed
            }
            if change {
                try applyChange()
            } else if let status {
                return status
            }
        }
    }

    private func applyChange() throws(CofferError) {
        switch mode {
        case .signal(let number):
            if let pid = runningChild { kill(pid, number) }
        case .restart:
            stopChild()
            // The exit was this restart's, not the command's own.
            condition.withLock { exited = nil }
            try spawn()
        }
    }

    private func spawn() throws(CofferError) {
        let variables = try plan.variables(from: condition.withLock { fetched })
        var environment = ProcessInfo.processInfo.environment
        environment.removeValue(forKey: "COFFER_TOKEN")
        environment.merge(variables) { _, new in new }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Self.resolve(command[0], path: environment["PATH"]))
        process.arguments = Array(command.dropFirst())
        process.environment = environment
        process.terminationHandler = { [weak self] process in
            guard let self else { return }
            self.condition.withLock {
                if self.child === process {
                    self.exited =
                        process.terminationReason == .uncaughtSignal
                        ? 128 + process.terminationStatus : process.terminationStatus
                    self.child = nil
                    self.condition.broadcast()
                }
            }
        }
        // The child before it runs: one that exits at once ends before `run` returns, and its termination handler
        // must find it to record its status.
        condition.withLock { child = process }
        do {
            try process.run()
        } catch {
            condition.withLock { if child === process { child = nil } }
            throw CofferError(
                .failedPrecondition,
                "cannot run \(Validation.quoted(command[0])): \(error.localizedDescription)"
            )
        }
    }

    /// The child's pid once it runs: a child being started has none yet (0, which kill would take for the whole
    /// process group).
    private var runningChild: pid_t? {
        condition.withLock { child.map(\.processIdentifier).flatMap { $0 > 0 ? $0 : nil } }
    }

    /// SIGTERM, then SIGKILL after 10 s; waits for the child to go.
    private func stopChild() {
        guard let process = condition.withLock({ child }), process.processIdentifier > 0 else { return }
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        condition.withLock { if child === process { child = nil } }
    }

    private var signalSources: [DispatchSourceSignal] = []

    private func forwardSignals() {
        for number in [SIGTERM, SIGINT, SIGHUP] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [weak self] in
                guard let self, let pid = self.runningChild else { return }
                kill(pid, number)
            }
            source.resume()
            signalSources.append(source)
        }
    }

    /// Follows the connections; reconnects after the last revision when the watch ends for a reason other than
    /// the token's end.
    private func watch(token: SecretBytes) {
        var last: UInt64 = 0
        var first = true
        while true {
            var ending: String?
            do throws(CofferError) {
                let worker = try step.sockets.worker()
                try worker.watch(plan.wanted, token: token, withValues: true, after: last) {
                    event throws(CofferError) in
                    switch event.kind {
                    case .started, .restart:
                        if first {
                            first = false
                            condition.withLock {
                                watching = true
                                condition.broadcast()
                            }
                        } else if event.kind == .restart {
                            // Changes were missed: get everything again, and treat it as a change.
                            let values = try step.fetch(plan.wanted)
                            notify { self.fetched = values }
                        }
                        last = event.revision
                    case .changed:
                        last = event.revision
                        guard let ref = event.connection, let values = event.values else { return true }
                        notify { self.fetched[ref] = values }
                    case .deleted, .inaccessible:
                        let what = event.kind == .deleted ? "was deleted" : "is no longer granted"
                        fail(
                            CofferError(
                                .permissionDenied,
                                "connection \(event.connection?.description ?? "?") \(what); the command was stopped"
                            )
                        )
                        return false
                    case .heartbeat:
                        last = event.revision
                    case .ended:
                        ending = event.reason
                    }
                    return true
                }
            } catch {
                if first {
                    condition.withLock {
                        failure = error
                        watching = true
                        condition.broadcast()
                    }
                    return
                }
                guard error.code == .unavailable || error.code == .deadlineExceeded else { return fail(error) }
                ending = error.message
            }
            if let ending, ending.hasPrefix("the token") {
                return fail(CofferError(.unauthenticated, "\(ending); the command was stopped"))
            }
            if condition.withLock({ failure != nil }) { return }
            usleep(500_000)
        }
    }

    private func notify(_ update: () -> Void) {
        condition.withLock {
            update()
            changed = true
            condition.broadcast()
        }
    }

    private func fail(_ error: CofferError) {
        condition.withLock {
            if failure == nil { failure = error }
            condition.broadcast()
        }
    }

    /// `program`'s path: as given when it names a directory, else the first executable in PATH.
    static func resolve(_ program: String, path: String?) throws(CofferError) -> String {
        if program.contains("/") { return program }
        for directory in (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory)/\(program)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw CofferError(.failedPrecondition, "cannot run \(Validation.quoted(program)): it is not in PATH")
    }
}
