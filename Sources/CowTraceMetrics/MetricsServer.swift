import CowTraceForecast
import CowTraceKit
import NIOCore
import NIOHTTP1
import NIOPosix
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An address to listen on: an IPv4 literal or a bracketed IPv6 literal, and
/// a port (0: any free port).
public struct ListenAddress: Equatable, Sendable, CustomStringConvertible {
    public enum Family: Sendable { case ipv4, ipv6 }
    public let family: Family
    /// The address as written, without brackets ("127.0.0.1", "::1").
    public let host: String
    public let port: UInt16

    public static let defaultText = "127.0.0.1:9464"
    public static let expectedFormat = "expected IPV4:PORT (127.0.0.1:9464) or [IPV6]:PORT ([::1]:9464), PORT from 0 to 65535 (0: any free port)"

    public init(family: Family, host: String, port: UInt16) {
        self.family = family
        self.host = host
        self.port = port
    }

    /// Parses "127.0.0.1:9464", "[::1]:9464", "0.0.0.0:0"; "localhost:P" is 127.0.0.1:P.
    public init(parsing text: String) throws {
        let bad = MetricsServerError.badAddress(text)
        let host: Substring, portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw bad }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw bad }
            portText = rest.dropFirst()
            family = .ipv6
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else { throw bad }
            host = text[..<colon] == "localhost" ? "127.0.0.1" : text[..<colon]
            portText = text[text.index(after: colon)...]
            family = .ipv4
        }
        guard !portText.isEmpty, portText.allSatisfy(\.isASCII), portText.allSatisfy(\.isNumber),
              let port = UInt16(portText) else { throw bad }
        self.host = String(host)
        self.port = port
        guard (try? sockaddrStorage()) != nil else { throw bad }
    }

    /// "127.0.0.1:9464", "[::1]:9464".
    public var description: String { "\(hostForURL):\(port)" }

    var hostForURL: String { family == .ipv6 ? "[\(host)]" : host }

    /// http://127.0.0.1:9464/metrics
    public var metricsURL: String { "http://\(description)/metrics" }

    /// 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104: not reachable from other hosts.
    public var isLoopback: Bool {
        guard let storage = try? sockaddrStorage() else { return false }
        switch family {
        case .ipv4:
            return storage.withUnsafeBytes { raw in
                raw.load(as: sockaddr_in.self).sin_addr.s_addr.bigEndian >> 24 == 127
            }
        case .ipv6:
            let bytes: [UInt8] = storage.withUnsafeBytes { raw in
                withUnsafeBytes(of: raw.load(as: sockaddr_in6.self).sin6_addr) { Array($0) }
            }
            if bytes == Array(repeating: 0, count: 15) + [1] { return true }
            return bytes.prefix(10).allSatisfy { $0 == 0 } && bytes[10] == 0xff && bytes[11] == 0xff && bytes[12] == 127
        }
    }

    /// One line for stderr when the endpoint can be reached from other hosts; nil on loopback.
    public var networkWarning: String? {
        isLoopback ? nil : "warning: \(self) is not a loopback address: the metrics (pids and command names of traced processes) are reachable from the network; use 127.0.0.1 or a firewall to restrict them"
    }

    /// The socket address, as bytes of a sockaddr_in or sockaddr_in6.
    func sockaddrStorage() throws -> [UInt8] {
        switch family {
        case .ipv4:
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = in_port_t(port).bigEndian
            guard inet_pton(AF_INET, host, &a.sin_addr) == 1 else { throw MetricsServerError.badAddress(description) }
            return withUnsafeBytes(of: &a) { Array($0) }
        case .ipv6:
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_port = in_port_t(port).bigEndian
            guard inet_pton(AF_INET6, host, &a.sin6_addr) == 1 else { throw MetricsServerError.badAddress(description) }
            return withUnsafeBytes(of: &a) { Array($0) }
        }
    }
}

public enum MetricsServerError: Error, Equatable, CustomStringConvertible {
    case badAddress(String)
    case addressInUse(ListenAddress)
    case cannotListen(ListenAddress, operation: String, errno: Errno)

    public var description: String {
        switch self {
        case .badAddress(let text):
            return "bad listen address '\(text)': \(ListenAddress.expectedFormat)"
        case .addressInUse(let a):
            return "\(a) is already in use (EADDRINUSE): stop the other server or pass --listen \(a.hostForURL):PORT"
        case .cannotListen(let a, let operation, let errno):
            switch errno.rawValue {
            case EADDRNOTAVAIL:
                return "cannot listen on \(a): no interface of this host has that address (EADDRNOTAVAIL)"
            case EACCES:
                return "cannot listen on \(a): ports below 1024 need root or CAP_NET_BIND_SERVICE (EACCES)"
            case EAFNOSUPPORT:
                return "cannot listen on \(a): this host has no \(a.family == .ipv6 ? "IPv6" : "IPv4") (EAFNOSUPPORT)"
            default:
                return "cannot listen on \(a): \(operation) failed: \(errno)"
            }
        }
    }
}

/// Serializes reads of a MetricsSource and renders the exposition. The lock
/// is held only while the snapshot is read; the text is built outside it.
public final class MetricsCollector: @unchecked Sendable {
    private let source: MetricsSource
    private let lock = NSLock()
    public let exposition: MetricsExposition

    public let aggregator: MetricsAggregator
    public let burstIntervalNanoseconds: UInt64?
    /// The live fork forecast, and how many forks get series (nil: no fork series).
    private let forecaster: LiveForkForecaster?
    public let maxForks: Int

    public init(source: MetricsSource, top: Int = MetricsExposition.defaultTop, grouping: MetricsGrouping = .pid,
                maxGroups: Int = MetricsAggregator.defaultMaxGroups, burstIntervalNanoseconds: UInt64? = nil,
                maxForks: Int = 0) {
        self.source = source
        self.maxForks = maxForks
        forecaster = maxForks > 0 ? LiveForkForecaster(window: 60, pageSize: source.pageSize, likelyVictims: false) : nil
        exposition = MetricsExposition(top: top)
        aggregator = MetricsAggregator(grouping: grouping, top: top, maxGroups: maxGroups)
        self.burstIntervalNanoseconds = burstIntervalNanoseconds
    }

    /// Runs `body` with the source locked (e.g. to trace more pids).
    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    public func read() throws -> MetricsSnapshot {
        try withLock {
            MetricsSnapshot(snapshot: try source.snapshot(), histograms: try source.histograms(),
                            tier: source.tier, pageSize: source.pageSize, burstIntervalNanoseconds: burstIntervalNanoseconds)
        }
    }

    /// The exposition text of the current counts, in `format`. Successive
    /// calls go through one aggregator, so counters never decrease.
    public func render(format: ExpositionFormat = .text) throws -> String {
        try withLock {
            let m = MetricsSnapshot(snapshot: try source.snapshot(), histograms: try source.histograms(),
                                    tier: source.tier, pageSize: source.pageSize, burstIntervalNanoseconds: burstIntervalNanoseconds)
            let forks = forecaster.map { f in
                Array(f.update(m.snapshot).sorted { ($0.sharedBytes, $1.childPID) > ($1.sharedBytes, $0.childPID) }.prefix(maxForks))
            } ?? []
            return exposition.render(aggregator.update(m), m, format: format, created: aggregator.created, forks: forks)
        }
    }
}

/// The metrics endpoint, on SwiftNIO's HTTP/1 server: `GET`/`HEAD /metrics`
/// (the exposition), `GET /` (a link to it), 404 elsewhere, 405 for other
/// methods. HTTP/1.1 keep-alive (and pipelining) is supported. One event-loop
/// thread serves every connection; the exposition is rendered on a thread of
/// its own and written back on the connection's event loop, so a slow render
/// holds up no other connection. Idle and half-sent connections cost a file
/// descriptor and a few KiB each, and are closed after the timeouts below.
public final class MetricsServer: @unchecked Sendable {
    /// The address bound: with port 0, the port the kernel chose.
    public let address: ListenAddress
    /// A connection that neither sends nor receives for this long is closed
    /// (a keep-alive connection between scrapes, a client that stopped reading).
    public static let idleTimeoutSeconds: Int64 = 30
    /// A request head begun must be complete within this long, or the client
    /// gets 408 and the connection is closed (slowloris).
    public static let headTimeoutSeconds: Int64 = 5
    /// A request head (request line and headers) over this many bytes gets
    /// 400 from NIO's decoder and the connection is closed.
    public static let maxHeadBytes = 16 * 1024
    /// Connections the kernel queues before they are accepted.
    public static let listenBacklog: Int32 = 1024
    /// After an accept fails for want of descriptors (EMFILE, ENFILE) or
    /// memory, accepting pauses this long.
    public static let acceptPauseSeconds: Int64 = 1

    private let render: @Sendable (ExpositionFormat) throws -> (body: String, format: ExpositionFormat)
    private let listenFD: Int32
    private let lock = NSLock()
    private var group: MultiThreadedEventLoopGroup?
    private var renderPool: NIOThreadPool?
    private var channel: Channel?
    private var started = false
    private var closed = false

    /// Binds and listens (connections wait in the backlog until `start()`).
    /// `metrics` is called for every scrape, on the render thread.
    public convenience init(listen: ListenAddress, metrics: @escaping () throws -> String) throws {
        try self.init(listen: listen, render: { _ in (try metrics(), .text) })
    }

    /// `render` gets the format the request's Accept header asks for and
    /// returns the body and the format it is in. It is called on the render
    /// thread, one scrape at a time.
    public init(listen: ListenAddress, render: @escaping (ExpositionFormat) throws -> (body: String, format: ExpositionFormat)) throws {
        let unchecked = UncheckedRender(render)
        self.render = { try unchecked.body($0) }
        let storage = try listen.sockaddrStorage()
        let domain = listen.family == .ipv6 ? AF_INET6 : AF_INET
        let fd = socket(domain, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw MetricsServerError.cannotListen(listen, operation: "socket", errno: .current) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if listen.family == .ipv6 {
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        let rc = storage.withUnsafeBytes { raw in
            bind(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        if rc != 0 {
            let e = Errno.current
            Glibc.close(fd)
            if e.rawValue == EADDRINUSE { throw MetricsServerError.addressInUse(listen) }
            throw MetricsServerError.cannotListen(listen, operation: "bind", errno: e)
        }
        guard Glibc.listen(fd, Self.listenBacklog) == 0 else {
            let e = Errno.current
            Glibc.close(fd)
            if e.rawValue == EADDRINUSE { throw MetricsServerError.addressInUse(listen) }
            throw MetricsServerError.cannotListen(listen, operation: "listen", errno: e)
        }
        var bound = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        let port: UInt16 = withUnsafeBytes(of: &bound) { raw in
            listen.family == .ipv6 ? UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port)
                                   : UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port)
        }
        listenFD = fd
        address = ListenAddress(family: listen.family, host: listen.host, port: port)
    }

    deinit { stop() }

    /// Starts accepting, on an event-loop thread of its own. The accept loop
    /// survives EMFILE and ENFILE: it stops accepting for
    /// `acceptPauseSeconds` (the connections wait in the backlog) rather than
    /// retrying at once and spinning (AcceptPauseHandler).
    public func start() {
        lock.lock()
        defer { lock.unlock() }
        guard !started, !closed else { return }
        started = true
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        let render = self.render
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: Self.listenBacklog)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptPauseHandler())
                }
            }
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let http = MetricsHTTPHandler(render: render, pool: pool)
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(allTimeout: .seconds(Self.idleTimeoutSeconds)))
                    try sync.addHandler(RequestHeadGuard(http))
                    var limits = NIOHTTPDecoderLimitConfiguration()
                    limits.maxHeaderFieldSize = Self.maxHeadBytes
                    limits.maxHeaderListSize = Self.maxHeadBytes
                    try sync.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: true,
                                                         withOutboundHeaderValidation: true, withEncoderConfiguration: .init(),
                                                         withDecoderLimitConfiguration: limits)
                    try sync.addHandler(http)
                }
            }
        do {
            channel = try bootstrap.withBoundSocket(listenFD).wait()
        } catch {
            FileHandle.standardError.write(Data("cowtrace: cannot serve \(address): \(error)\n".utf8))
            Glibc.close(listenFD)
        }
        self.group = group
        renderPool = pool
    }

    /// Stops accepting, closes every connection and the socket. Idempotent.
    public func stop() {
        lock.lock()
        defer { lock.unlock() }
        if closed { return }
        closed = true
        guard started else {
            Glibc.close(listenFD)
            return
        }
        // The render thread first: a scrape being rendered finishes (and no
        // queued one starts) while its event loop can still take the answer;
        // after this returns, no render runs.
        try? channel?.close().wait()
        try? renderPool?.syncShutdownGracefully()
        try? group?.syncShutdownGracefully()
        channel = nil
        group = nil
        renderPool = nil
    }
}

/// On the listening channel: after an accept fails with EMFILE, ENFILE,
/// ENOBUFS or ENOMEM, stops reading (accepting) for `acceptPauseSeconds`.
/// NIO's AcceptBackoffHandler does not do it here: a failed accept leaves the
/// channel's read pending, so no new read() reaches it, and the level-triggered
/// listening socket is polled and fails again at once (seen: thousands of
/// accept4 = EMFILE a second, 40% of a core). Turning autoRead off
/// unregisters the socket from epoll; turning it on again re-registers it.
final class AcceptPauseHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Channel
    typealias InboundOut = Channel
    private var paused = false

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard let e = error as? IOError, [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(e.errnoCode) else {
            context.fireErrorCaught(error)
            return
        }
        guard !paused, let options = context.channel.syncOptions else { return }
        paused = true
        try? options.setOption(.autoRead, value: false)
        let channel = NIOLoopBound(context.channel, eventLoop: context.eventLoop)
        context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(MetricsServer.acceptPauseSeconds)) { [self] in
            paused = false
            try? channel.value.syncOptions?.setOption(.autoRead, value: true)
        }
    }
}

/// The caller's render closure, which is not declared Sendable: it is only
/// ever called on the one render thread.
private struct UncheckedRender: @unchecked Sendable {
    let body: (ExpositionFormat) throws -> (body: String, format: ExpositionFormat)
    init(_ body: @escaping (ExpositionFormat) throws -> (body: String, format: ExpositionFormat)) { self.body = body }
}

/// A connection's requests, one at a time (NIO's pipelining handler holds
/// back the next): routes, renders off the event loop, writes the response.
/// The next request is answered once the previous response is written out,
/// so a client that does not read cannot make responses pile up.
final class MetricsHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let render: @Sendable (ExpositionFormat) throws -> (body: String, format: ExpositionFormat)
    private let pool: NIOThreadPool
    /// Head received, end not yet.
    private var receiving: HTTPRequestHead?
    /// Being answered (rendered or written).
    private var answering: HTTPRequestHead?
    /// Complete, waiting for `answering`.
    private var waiting: HTTPRequestHead?
    private var inputClosed = false
    private var refused = false

    /// Called when a request's head arrives, and when the last response is
    /// written out and no request is in progress (RequestHeadGuard's timers).
    var onHead: () -> Void = {}
    var onIdle: () -> Void = {}

    /// A request is in progress: its head has arrived, its response is not yet written out.
    var inRequest: Bool { receiving != nil || answering != nil || waiting != nil }

    init(render: @escaping @Sendable (ExpositionFormat) throws -> (body: String, format: ExpositionFormat), pool: NIOThreadPool) {
        self.render = render
        self.pool = pool
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            receiving = head
            onHead()
            if Self.hasBody(head) {
                // Nothing here takes a body: refuse it rather than read it.
                refused = true
                receiving = nil
                answering = head
                send(context, head, status: .payloadTooLarge, body: "a request body is not accepted here\n", keepAlive: false)
            }
        case .body:
            break
        case .end:
            guard let head = receiving else { return }
            receiving = nil
            if answering == nil { answer(context, head) } else { waiting = head }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            inputClosed = true
            if !inRequest { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    static func hasBody(_ head: HTTPRequestHead) -> Bool {
        if head.headers.contains(name: "transfer-encoding") { return true }
        return head.headers["content-length"].contains { Int($0.trimmingCharacters(in: .whitespaces)) != 0 }
    }

    private func answer(_ context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        answering = head
        let keepAlive = head.isKeepAlive && !inputClosed
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        let isHead = head.method == .HEAD
        guard path == "/metrics" || path == "/" else {
            return send(context, head, status: .notFound, body: "not found: the metrics are at /metrics\n", keepAlive: keepAlive)
        }
        guard head.method == .GET || isHead else {
            return send(context, head, status: .methodNotAllowed, body: "only GET and HEAD\n", keepAlive: keepAlive,
                        extra: [("Allow", "GET, HEAD")])
        }
        if path == "/" {
            return send(context, head, status: .ok, type: "text/html; charset=utf-8",
                        body: "<html><head><title>cowtrace</title></head><body><a href=\"/metrics\">cowtrace metrics</a></body></html>\n",
                        keepAlive: keepAlive)
        }
        let accept = head.headers["accept"]
        let format = ExpositionFormat(accept: accept.isEmpty ? nil : accept.joined(separator: ","))
        let render = self.render
        pool.runIfActive(eventLoop: context.eventLoop) { () -> Result<(body: String, format: ExpositionFormat), RenderError> in
            do { return .success(try render(format)) } catch { return .failure(RenderError(text: "\(error)")) }
        }.assumeIsolated().whenComplete { result in
            switch result {
            case .success(.success(let (body, format))):
                self.send(context, head, status: .ok, type: format.contentType, body: body, keepAlive: keepAlive)
            case .success(.failure(let error)):
                self.send(context, head, status: .internalServerError, body: "cowtrace: \(error.text)\n", keepAlive: keepAlive)
            case .failure:
                // The render pool is shutting down: so is the server.
                context.close(promise: nil)
            }
        }
    }

    struct RenderError: Error { let text: String }

    private func send(_ context: ChannelHandlerContext, _ request: HTTPRequestHead, status: HTTPResponseStatus,
                      type: String = "text/plain; charset=utf-8", body: String, keepAlive: Bool,
                      extra: [(String, String)] = []) {
        var buffer = context.channel.allocator.buffer(capacity: body.utf8.count)
        buffer.writeString(body)
        var headers = HTTPHeaders([("Content-Type", type), ("Content-Length", "\(buffer.readableBytes)")])
        headers.add(contentsOf: extra)
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        let version: HTTPVersion = request.version.major == 1 && request.version.minor == 0 ? .http1_0 : .http1_1
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
        if request.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { result in
            self.answering = nil
            guard case .success = result, keepAlive else {
                context.close(promise: nil)
                return
            }
            if let next = self.waiting {
                self.waiting = nil
                self.answer(context, next)
            } else if !self.inRequest {
                if self.inputClosed { context.close(promise: nil) } else { self.onIdle() }
            }
        }
    }
}

/// First in a connection's pipeline (after the idle timer), on the raw
/// bytes: closes a connection whose request head is not complete within
/// `headTimeoutSeconds` of its first byte (408, however slowly the bytes
/// trickle in), and closes idle connections when IdleStateHandler says so.
/// (NIO's decoder bounds the head's size; its pipelining handler stops
/// reading while a request waits, which bounds what a connection buffers.)
final class RequestHeadGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let http: MetricsHTTPHandler
    /// Bytes received since the last request head arrived.
    private var sinceHead = 0
    private var deadline: Scheduled<Void>?
    private var closing = false

    init(_ http: MetricsHTTPHandler) { self.http = http }

    func handlerAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        http.onHead = { [unowned self] in
            sinceHead = 0
            deadline?.cancel()
            deadline = nil
        }
        http.onIdle = { [unowned self] in
            if sinceHead > 0 { arm(loopBound.value) }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        http.onHead = {}
        http.onIdle = {}
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        sinceHead += unwrapInboundIn(data).readableBytes
        context.fireChannelRead(data)
        // Bytes of a head that the decoder has not finished (a head that
        // came in this read reset the count): the deadline runs.
        if sinceHead > 0, !closing, !http.inRequest { arm(context) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func arm(_ context: ChannelHandlerContext) {
        guard deadline == nil, !closing else { return }
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(MetricsServer.headTimeoutSeconds)) { [self] in
            deadline = nil
            guard !http.inRequest else { return }
            reject(loopBound.value, "408 Request Timeout", "request head not complete within \(MetricsServer.headTimeoutSeconds) s\n")
        }
    }

    /// A response of our own (no HTTP exchange is in progress), then close.
    private func reject(_ context: ChannelHandlerContext, _ status: String, _ body: String) {
        closing = true
        deadline?.cancel()
        deadline = nil
        var buffer = context.channel.allocator.buffer(capacity: 256)
        buffer.writeString("HTTP/1.1 \(status)\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)")
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(buffer)).assumeIsolated().whenComplete { _ in
            loopBound.value.close(promise: nil)
        }
    }
}
