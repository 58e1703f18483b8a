import CofferCore
import CofferStore
import Foundation
import Prometheus
import Synchronization

/// What cofferd counts for a fleet's dashboards, in Prometheus's text format: requests by operation and
/// outcome, their latency, clients by socket, the audit records written a batch at a time, the revision, the
/// watches open, and in a cluster the node's lag and time since it last had all of the log. No value, token,
/// name of a connection or workflow: only operations, outcomes and counts.
public final class CofferMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let requests = Mutex<[String: Counter]>([:])
    private let durations = Mutex<[String: DurationHistogram]>([:])
    private let auditBatch: ValueHistogram
    private let clients: [SocketRole: Gauge]
    private let revision: Gauge
    private let watches: Gauge
    /// Made when the node is in a cluster: a single cofferd has no lag to report.
    private let cluster = Mutex<(lag: Gauge, sinceSync: Gauge)?>(nil)
    /// Reads what is sampled when the metrics are scraped.
    /// Behind an NSLock, not in a Mutex: a closure read back from a Mutex gains a reabstraction thunk each time.
    private let samplerLock = NSLock()
    nonisolated(unsafe) private var sampler: (@Sendable (CofferMetrics) -> Void)?

    static let latencyBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
        .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .seconds(1),
    ]

    public init() {
        auditBatch = registry.makeValueHistogram(
            descriptor: Self.name("audit_batch_records", "Audit records written to the journal in one write."),
            buckets: [1, 2, 4, 8, 16, 32, 64, 128]
        )
        var clients: [SocketRole: Gauge] = [:]
        for socket in SocketRole.allCases {
            clients[socket] = registry.makeGauge(
                descriptor: Self.name("clients", "Clients connected, by socket."),
                labels: [("socket", socket.rawValue)]
            )
        }
        self.clients = clients
        revision = registry.makeGauge(descriptor: Self.name("revision", "The newest revision of the change feed."))
        watches = registry.makeGauge(descriptor: Self.name("watches", "Watches open."))
    }

    private static func name(_ metric: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "coffer", metricName: metric, helpText: help)
    }

    /// One answered request: its operation (or "Malformed"), its outcome and how long its turn took.
    func answered(_ operation: String, _ outcome: StatusCode, after duration: Duration) {
        let key = operation + "|" + outcome.name
        let counter = requests.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = registry.makeCounter(
                descriptor: Self.name("requests_total", "Requests answered, by operation and outcome."),
                labels: [("operation", operation), ("outcome", outcome.name)]
            )
            counters[key] = counter
            return counter
        }
        counter.increment()
        let histogram = durations.withLock { histograms in
            if let histogram = histograms[operation] { return histogram }
            let histogram = registry.makeDurationHistogram(
                descriptor: Self.name("request_duration_seconds", "Time from a request's turn starting to its answer."),
                labels: [("operation", operation)],
                buckets: Self.latencyBuckets
            )
            histograms[operation] = histogram
            return histogram
        }
        histogram.record(duration)
    }

    func auditBatchWritten(_ records: Int) {
        guard records > 0 else { return }
        auditBatch.record(Double(records))
    }

    /// What to read when the metrics are scraped (clients, the revision, watches, the cluster).
    func sample(_ body: @escaping @Sendable (CofferMetrics) -> Void) {
        samplerLock.withLock { sampler = body }
    }

    func set(clients count: Int, socket: SocketRole) { clients[socket]?.set(Double(count)) }

    func set(revision value: UInt64, watches open: Int) {
        revision.set(Double(value))
        watches.set(Double(open))
    }

    func set(cluster snapshot: ReplicationStatus.Snapshot, now: Date) {
        let (lag, sinceSync) = cluster.withLock { gauges in
            if let gauges { return gauges }
            let made = (
                lag: registry.makeGauge(
                    descriptor: Self.name(
                        "cluster_lag_revisions",
                        "Revisions of the cluster's log this node has not applied."
                    )
                ),
                sinceSync: registry.makeGauge(
                    descriptor: Self.name(
                        "cluster_seconds_since_sync",
                        "Seconds since this node last had everything the cluster's log held; -1 before it has."
                    )
                )
            )
            gauges = made
            return made
        }
        lag.set(Double(snapshot.lag))
        sinceSync.set(snapshot.caughtUp.map { now.timeIntervalSince($0) } ?? -1)
    }

    /// The metrics in Prometheus's text format, sampled now.
    public func exposition() -> [UInt8] {
        if let sampler = samplerLock.withLock({ sampler }) { sampler(self) }
        return registry.emitToBuffer()
    }
}
