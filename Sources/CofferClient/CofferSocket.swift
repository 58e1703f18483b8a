import CofferCore
import CofferWire
import Foundation

/// A client's end of one cofferd socket. Calls block the calling thread; a lock makes them safe to share.
/// Several requests may be sent before their responses are read (`pipeline`).
public final class CofferSocket: @unchecked Sendable {
    // Safe to share: every use of `fd`, `nextID` and the buffer is under `lock`.
    private let lock = NSLock()
    private var fd: Int32
    private var nextID: UInt64 = 1
    private var revision: UInt64 = 0

    /// The change feed's revision of the last change a request on this socket committed; 0 before one.
    public internal(set) var lastRevision: UInt64 {
        get { lock.withLock { revision } }
        set { lock.withLock { revision = newValue } }
    }
    /// Bytes read and not yet taken: `buffer[consumed...]`.
    private var buffer: [UInt8] = []
    private var consumed = 0
    public let socketPath: String
    /// The largest response frame read.
    public let maxFrameSize: Int

    /// Connects to the socket at `path` and checks, before anything is sent, that cofferd listens there:
    /// the listener's uid (from the kernel) must be `serverUID` (by default COFFER_SERVER_UID), or without one,
    /// the owner of the socket's directory, or root (see `UnixSocket.verifyServer`). Each read and write gives
    /// up after `timeout`.
    public init(
        socketPath path: String,
        timeout: Duration = .seconds(30),
        maxFrameSize: Int = Framing.defaultMaxResponseFrameSize,
        serverUID: uid_t? = nil
    ) throws(CofferError) {
        socketPath = path
        self.maxFrameSize = maxFrameSize
        guard path.utf8.count <= UnixSocket.maxPathLength else {
            throw CofferError(.invalidArgument, "socket path \(path) is longer than \(UnixSocket.maxPathLength) bytes")
        }
        let fd: Int32
        switch UnixSocket.connect(path) {
        case .success(let connected):
            fd = connected
        case .failure(let error) where error.code == EACCES || error.code == EPERM:
            throw CofferError(.permissionDenied, "cannot connect to cofferd at \(path): permission denied")
        case .failure(let error):
            throw CofferError(.unavailable, "cannot connect to cofferd at \(path): \(error); is cofferd running?")
        }
        do throws(CofferError) {
            var expected = serverUID
            if expected == nil { expected = try UnixSocket.configuredServerUID() }
            try UnixSocket.verifyServer(fd: fd, path: path, expected: expected)
        } catch {
            Glibc.close(fd)
            throw error
        }
        let microseconds = timeout.nanoseconds / 1000
        var interval = timeval(tv_sec: Int(microseconds / 1_000_000), tv_usec: Int(microseconds % 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
        self.fd = fd
    }

    deinit { close() }

    public func close() {
        lock.withLock {
            if fd >= 0 { Glibc.close(fd) }
            fd = -1
        }
    }

    /// Sends one request and waits for its response. The request's id is assigned here.
    package func call(_ request: Coffer_V1_Request) throws(CofferError) -> Coffer_V1_Response {
        try pipeline([request])[0]
    }

    /// Sends every request before reading any response, then returns the responses in request order.
    package func pipeline(_ requests: [Coffer_V1_Request]) throws(CofferError) -> [Coffer_V1_Response] {
        lock.lock()
        defer { lock.unlock() }
        guard fd >= 0 else { throw CofferError(.unavailable, "the socket \(socketPath) is closed") }
        var ids: [UInt64] = []
        var out: [UInt8] = []
        for var request in requests {
            request.id = nextID
            nextID += 1
            ids.append(request.id)
            do {
                out += try Framing.frame(request)
            } catch {
                throw CofferError(.invalidArgument, "the request could not be encoded", cause: error)
            }
        }
        try writeAll(out)
        var responses: [Coffer_V1_Response] = []
        for id in ids {
            let response = try Framing.decode(Coffer_V1_Response.self, from: try readFrame())
            // A response with id 0 answers a frame cofferd could not read; it is about this socket.
            if response.id == 0, let error = response.status.error { throw error }
            guard response.id == id else {
                throw CofferError(.internal, "cofferd answered request \(response.id) where \(id) was expected")
            }
            responses.append(response)
        }
        return responses
    }

    /// Sends `request` and hands each response to it to `body`, until `body` returns false or cofferd closes the
    /// connection (UNAVAILABLE). For a Watch, whose answer is a stream.
    package func stream(
        _ request: Coffer_V1_Request,
        _ body: (Coffer_V1_Response) throws(CofferError) -> Bool
    ) throws(CofferError) {
        lock.lock()
        defer { lock.unlock() }
        guard fd >= 0 else { throw CofferError(.unavailable, "the socket \(socketPath) is closed") }
        var request = request
        request.id = nextID
        nextID += 1
        do {
            try writeAll(try Framing.frame(request))
        } catch let error as CofferError {
            throw error
        } catch {
            throw CofferError(.invalidArgument, "the request could not be encoded", cause: error)
        }
        while true {
            let response = try Framing.decode(Coffer_V1_Response.self, from: try readFrame())
            if response.id == 0, let error = response.status.error { throw error }
            guard response.id == request.id else {
                throw CofferError(.internal, "cofferd answered request \(response.id) where \(request.id) was expected")
            }
            guard try body(response) else { return }
        }
    }

    /// Writes raw bytes, for tests that speak the protocol by hand.
    package func writeRaw(_ bytes: [UInt8]) throws(CofferError) {
        lock.lock()
        defer { lock.unlock() }
        try writeAll(bytes)
    }

    /// Reads one response frame, for tests that speak the protocol by hand.
    package func readResponse() throws(CofferError) -> Coffer_V1_Response {
        lock.lock()
        defer { lock.unlock() }
        return try Framing.decode(Coffer_V1_Response.self, from: try readFrame())
    }

    /// Closes the writing half only (SHUT_WR), for tests of a half-closed client.
    package func shutdownWriting() {
        lock.withLock { _ = shutdown(fd, Int32(SHUT_WR)) }
    }

    private func writeAll(_ bytes: [UInt8]) throws(CofferError) {
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes {
                send(fd, $0.baseAddress! + written, bytes.count - written, Int32(MSG_NOSIGNAL))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw transportError("write", errno)
            }
            written += n
        }
    }

    private func readFrame() throws(CofferError) -> ArraySlice<UInt8> {
        while true {
            let pending = buffer[consumed...]
            switch Framing.header(pending, maxFrameSize: maxFrameSize) {
            case .frame(let length, let prefixLength) where pending.count >= prefixLength + length:
                let start = consumed + prefixLength
                consumed = start + length
                return buffer[start..<consumed]
            case .invalid(_, let message):
                throw CofferError(.internal, "cofferd sent a bad frame: \(message)")
            case .frame, .incomplete:
                try fill()
            }
        }
    }

    /// Reads more bytes, first dropping those already taken, so that reading many frames costs their bytes,
    /// not their count times the buffer.
    private func fill() throws(CofferError) {
        if consumed > 0 {
            buffer.removeFirst(consumed)
            consumed = 0
        }
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n > 0 {
                buffer += chunk[0..<n]
                return
            }
            if n == 0 {
                throw CofferError(.unavailable, "cofferd closed the connection")
            }
            if errno == EINTR { continue }
            throw transportError("read", errno)
        }
    }

    private func transportError(_ what: String, _ err: Int32) -> CofferError {
        if err == EAGAIN || err == EWOULDBLOCK {
            return CofferError(.deadlineExceeded, "cofferd did not answer in time")
        }
        return CofferError(.unavailable, "cannot \(what) on \(socketPath): \(SystemError(err))")
    }
}
