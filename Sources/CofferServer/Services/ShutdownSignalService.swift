import CCofferShims
import Foundation
import Logging
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// Turns SIGTERM, SIGINT and SIGHUP into a graceful shutdown of the service group, reliably.
///
/// `cofferd serve` catches these signals itself from before main (see `coffer_shutdown_signal_fd` in
/// CCofferShims): libdispatch's signal sources, which the service group would otherwise use, lose a signal that
/// reaches a thread without their mask, and a lost SIGTERM left cofferd running. This service returns when a
/// signal arrives, and is configured to shut the group down gracefully when it does; a signal that arrived
/// during start-up is already waiting in the pipe.
public final class ShutdownSignalService: Service, Sendable {
    private let fd: Int32
    private let logger: Logger

    /// nil when this process does not catch its shutdown signals (it is not `cofferd serve`).
    public init?(logger: Logger) {
        fd = coffer_shutdown_signal_fd()
        guard fd >= 0 else { return nil }
        self.logger = logger
    }

    public func run() async throws {
        let signals = AsyncStream<Int32> { continuation in
            let fd = self.fd
            let reader = Thread {
                var number: UInt8 = 0
                while true {
                    let count = read(fd, &number, 1)
                    if count == 1 {
                        continuation.yield(Int32(number))
                    } else if count < 0 && errno == EINTR {
                        continue
                    } else {
                        continuation.finish()
                        return
                    }
                }
            }
            reader.name = "coffer-signals"
            reader.start()
        }
        await cancelWhenGracefulShutdown {
            for await number in signals {
                self.logger.notice("shutting down", metadata: ["signal": "\(Self.name(number))"])
                return
            }
        }
    }

    static func name(_ number: Int32) -> String {
        switch number {
        case SIGTERM: "SIGTERM"
        case SIGINT: "SIGINT"
        case SIGHUP: "SIGHUP"
        default: "\(number)"
        }
    }
}
