import CowTraceForecast
import CowTraceKit
import CBPF
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
        forecaster = maxForks > 0 ? LiveForkForecaster(window: 60, pageSize: source.pageSize) : nil
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

/// A minimal HTTP/1.1 server for the metrics endpoint: `GET`/`HEAD /metrics`
/// (the exposition), `GET /` (a link to it), 404 elsewhere; one request per
/// connection (`Connection: close`). The accept loop runs on its own thread
/// and every connection on another, so slow or many scrapers do not hold up
/// the caller; reads and writes time out after a few seconds.
public final class MetricsServer: @unchecked Sendable {
    /// The address bound: with port 0, the port the kernel chose.
    public let address: ListenAddress
    public static let maxConnections = 32
    public static let ioTimeoutSeconds = 5

    private let metrics: (ExpositionFormat) throws -> (body: String, format: ExpositionFormat)
    private let listenFD: Int32
    private var wakePipe: [Int32] = [-1, -1]
    private let state = NSCondition()
    private var active = 0
    private var running = false
    private var acceptDone = false
    private var closed = false

    /// Binds and listens (connections wait in the backlog until `start()`).
    /// `metrics` is called for every scrape, on the connection's thread.
    public convenience init(listen: ListenAddress, metrics: @escaping () throws -> String) throws {
        try self.init(listen: listen, render: { _ in (try metrics(), .text) })
    }

    /// `render` gets the format the request's Accept header asks for and
    /// returns the body and the format it is in.
    public init(listen: ListenAddress, render: @escaping (ExpositionFormat) throws -> (body: String, format: ExpositionFormat)) throws {
        self.metrics = render
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
        guard Glibc.listen(fd, 128) == 0 else {
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
        guard cbpf_pipe_cloexec(&wakePipe) == 0 else {
            Glibc.close(fd)
            throw MetricsServerError.cannotListen(listen, operation: "pipe", errno: .current)
        }
    }

    deinit { stop() }

    /// Starts accepting, on a thread of its own.
    public func start() {
        state.lock()
        defer { state.unlock() }
        guard !running, !closed else { return }
        running = true
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "cowtrace-metrics-accept"
        thread.start()
    }

    /// Stops accepting, waits (a few seconds at most) for the requests in
    /// flight, and closes the socket. Idempotent.
    public func stop() {
        state.lock()
        if closed { state.unlock(); return }
        closed = true
        let wasRunning = running
        state.unlock()
        var byte: UInt8 = 1
        _ = write(wakePipe[1], &byte, 1)
        state.lock()
        let deadline = Date().addingTimeInterval(Double(Self.ioTimeoutSeconds) * 2 + 1)
        while (wasRunning && !acceptDone) || active > 0 {
            if !state.wait(until: deadline) { break }
        }
        state.unlock()
        Glibc.close(listenFD)
        Glibc.close(wakePipe[0])
        Glibc.close(wakePipe[1])
    }

    private func acceptLoop() {
        defer {
            state.lock()
            acceptDone = true
            state.broadcast()
            state.unlock()
        }
        while true {
            var fds = [pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: wakePipe[0], events: Int16(POLLIN), revents: 0)]
            let n = poll(&fds, 2, -1)
            if n < 0 {
                if errno == EINTR { continue }
                return
            }
            if fds[1].revents != 0 { return }
            if fds[0].revents == 0 { continue }
            let client = accept(listenFD, nil, nil)
            if client < 0 { continue } // EINTR, ECONNABORTED, EMFILE: try again
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            state.lock()
            if active >= Self.maxConnections {
                state.unlock()
                Self.send(client, Self.response(status: "503 Service Unavailable", type: "text/plain; charset=utf-8",
                                                body: Data("too many scrapes at once\n".utf8), head: false))
                Glibc.close(client)
                continue
            }
            active += 1
            state.unlock()
            let worker = Thread { [self] in
                handle(client)
                Glibc.close(client)
                state.lock()
                active -= 1
                state.broadcast()
                state.unlock()
            }
            worker.name = "cowtrace-metrics-conn"
            worker.start()
        }
    }

    private func handle(_ fd: Int32) {
        var timeout = timeval(tv_sec: Self.ioTimeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard let (request, headers) = Self.readRequest(fd) else {
            Self.send(fd, Self.response(status: "400 Bad Request", type: "text/plain; charset=utf-8", body: Data("bad request\n".utf8), head: false))
            return
        }
        Self.send(fd, respond(to: request, accept: headers["accept"]))
        shutdown(fd, Int32(SHUT_WR))
    }

    /// The response to a request line such as "GET /metrics HTTP/1.1".
    func respond(to requestLine: String, accept: String? = nil) -> Data {
        let parts = requestLine.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/") else {
            return Self.response(status: "400 Bad Request", type: "text/plain; charset=utf-8", body: Data("bad request\n".utf8), head: false)
        }
        let method = String(parts[0])
        let path = parts[1].split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        let head = method == "HEAD"
        let known = path == "/metrics" || path == "/"
        guard known else {
            return Self.response(status: "404 Not Found", type: "text/plain; charset=utf-8",
                                 body: Data("not found: the metrics are at /metrics\n".utf8), head: head)
        }
        guard method == "GET" || head else {
            return Self.response(status: "405 Method Not Allowed", type: "text/plain; charset=utf-8",
                                 body: Data("only GET and HEAD\n".utf8), head: false, extra: "Allow: GET, HEAD\r\n")
        }
        if path == "/" {
            return Self.response(status: "200 OK", type: "text/html; charset=utf-8",
                                 body: Data("<html><head><title>cowtrace</title></head><body><a href=\"/metrics\">cowtrace metrics</a></body></html>\n".utf8),
                                 head: head)
        }
        do {
            let (body, format) = try metrics(ExpositionFormat(accept: accept))
            return Self.response(status: "200 OK", type: format.contentType, body: Data(body.utf8), head: head)
        } catch {
            return Self.response(status: "500 Internal Server Error", type: "text/plain; charset=utf-8",
                                 body: Data("cowtrace: \(error)\n".utf8), head: head)
        }
    }

    static func response(status: String, type: String, body: Data, head: Bool, extra: String = "") -> Data {
        var out = Data("HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(body.count)\r\n\(extra)Connection: close\r\n\r\n".utf8)
        if !head { out.append(body) }
        return out
    }

    /// The request line and the headers (lower-cased names) of the request's head.
    static func readRequest(_ fd: Int32) -> (String, [String: String])? {
        guard let head = readHeadText(fd) else { return nil }
        return parseHead(head)
    }

    static func parseHead(_ head: String) -> (String, [String: String])? {
        // Split on UTF-8 line feeds: "\r\n" is one Character to String.
        let lines = head.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { bytes in
            String(decoding: bytes.last == UInt8(ascii: "\r") ? bytes.dropLast() : bytes[...], as: UTF8.self)
        }
        guard let first = lines.first, !first.isEmpty else { return nil }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers[name] = headers[name].map { $0 + "," + value } ?? value
        }
        return (String(first), headers)
    }

    /// Reads up to the end of the request's head; returns its first line.
    /// nil on a timeout, a closed connection, or a head over 16 KiB.
    static func readHead(_ fd: Int32) -> String? {
        guard let head = readHeadText(fd) else { return nil }
        return parseHead(head)?.0
    }

    /// The request's head as read (up to 16 KiB).
    static func readHeadText(_ fd: Int32) -> String? {
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        let end: [UInt8] = Array("\r\n\r\n".utf8)
        while data.count < 16384 {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            data.append(contentsOf: buffer[0..<n])
            let from = max(0, data.count - n - 3)
            if data.count >= 4, (from...(data.count - 4)).contains(where: { Array(data[$0..<$0 + 4]) == end }) {
                break
            }
        }
        guard let lineEnd = data.firstIndex(of: UInt8(ascii: "\r")) ?? data.firstIndex(of: UInt8(ascii: "\n")),
              lineEnd > 0 else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    static func send(_ fd: Int32, _ data: Data) {
        data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                offset += n
            }
        }
    }
}
