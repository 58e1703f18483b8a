import CofferCore
import CofferStore
import CofferTestSupport
import CofferWire
import Foundation
import Logging
import Testing

@testable import CofferServer

/// The token janitor purges, through the writer, the records of tokens long past their expiry, and no others.
@Suite struct TokenJanitorTests {
    @Test func purgesOnlyTokensPastTheRetention() async throws {
        let server = try InProcessServer()
        _ = try await server.call(InProcessServer.issue("w", ttl: 60))
        _ = try await server.call(InProcessServer.issue("w", ttl: 7200))
        server.clock.advance(3600)
        #expect(try server.store.listTokens().count == 2)
        let clock = server.clock
        let janitor = TokenJanitor(
            commits: server.commits,
            retention: .seconds(600),
            interval: .seconds(3600),
            clock: { clock.now },
            logger: Logger(label: "test")
        )
        let running = Task { try await janitor.run() }
        defer { running.cancel() }
        let deadline = Date().addingTimeInterval(10)
        while try server.store.listTokens().count != 1, Date() < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        let left = try server.store.listTokens()
        #expect(left.count == 1)
        #expect(left.first.map { $0.expires > clock.now } == true)
    }
}
