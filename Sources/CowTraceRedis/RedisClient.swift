import CowTraceKit
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One RESP2 reply, as Redis sends it.
public enum RESPValue: Equatable, Sendable {
    case simple(String)
    case error(String)
    case integer(Int64)
    /// nil is the null bulk string ($-1).
    case bulk([UInt8]?)
    /// nil is the null array (*-1).
    case array([RESPValue]?)

    /// The reply as text, for simple and bulk strings.
    public var text: String? {
        switch self {
        case .simple(let s): return s
        case .bulk(let b?): return String(decoding: b, as: UTF8.self)
        default: return nil
        }
    }
}

/// A minimal Redis client: RESP2 over one TCP connection to loopback, one
/// command at a time (or a pipeline), blocking with a timeout. Enough for
/// INFO, CONFIG and BGSAVE; not a general-purpose client.
public final class RedisClient {
    public let host: String
    public let port: UInt16
    public let timeoutSeconds: Double
    private var fd: Int32
    private var buffer: [UInt8] = []
    private var position = 0

    /// Connects to host:port. A refused connection means no Redis listens
    /// there; with `password` (or REDISCLI_AUTH in the environment, as
    /// redis-cli does) AUTH is sent first.
    public init(host: String = "127.0.0.1", port: UInt16, timeoutSeconds: Double = 5, password: String? = ProcessInfo.processInfo.environment["REDISCLI_AUTH"]) throws {
        self.host = host
        self.port = port
        self.timeoutSeconds = timeoutSeconds
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            throw RedisError.badAddress(host: host)
        }
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw RedisError.connect(host: host, port: port, errno: .current) }
        var tv = timeval(tv_sec: Int(timeoutSeconds), tv_usec: Int((timeoutSeconds - Double(Int(timeoutSeconds))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if rc != 0 {
            let e = Errno.current
            Glibc.close(fd)
            fd = -1
            if e.rawValue == ECONNREFUSED { throw RedisError.notListening(host: host, port: port) }
            if e.rawValue == EINPROGRESS || e.rawValue == EAGAIN || e.rawValue == ETIMEDOUT {
                throw RedisError.timeout(host: host, port: port, operation: "connect", seconds: timeoutSeconds)
            }
            throw RedisError.connect(host: host, port: port, errno: e)
        }
        if let password, !password.isEmpty {
            _ = try command(["AUTH", password])
        }
    }

    deinit { close() }

    public func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// Sends one command and returns its reply; an error reply (-ERR,
    /// -NOAUTH, ...) throws `RedisError.refused`.
    @discardableResult
    public func command(_ arguments: [String]) throws -> RESPValue {
        let reply = try pipeline([arguments])[0]
        if case .error(let message) = reply {
            throw RedisError.refused(host: host, port: port, command: arguments.first?.uppercased() ?? "", message: message)
        }
        return reply
    }

    /// Sends every command in one write and reads as many replies, error
    /// replies included (they do not throw here).
    public func pipeline(_ commands: [[String]]) throws -> [RESPValue] {
        var out = [UInt8]()
        for arguments in commands { out += RESP.encode(arguments) }
        try writeAll(out)
        return try commands.map { _ in try RESP.parse(from: self.readLine, readBytes: self.readBytes) }
    }

    /// INFO [section], parsed into fields.
    public func info(_ section: String? = nil) throws -> RedisInfo {
        let reply = try command(["INFO"] + (section.map { [$0] } ?? []))
        guard let text = reply.text else {
            throw RedisError.unexpectedReply(host: host, port: port, command: "INFO", reply: "\(reply)")
        }
        return RedisInfo(parsing: text)
    }

    /// Starts BGSAVE. Throws `saveInProgress` when a save is already running.
    public func bgsave() throws {
        do {
            let reply = try command(["BGSAVE"])
            guard case .simple = reply else {
                throw RedisError.unexpectedReply(host: host, port: port, command: "BGSAVE", reply: "\(reply)")
            }
        } catch RedisError.refused(_, _, _, let message) where message.lowercased().contains("already in progress") {
            throw RedisError.saveInProgress(host: host, port: port)
        }
    }

    // MARK: socket I/O

    private func writeAll(_ bytes: [UInt8]) throws {
        guard fd >= 0 else { throw RedisError.connectionClosed(host: host, port: port) }
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN { throw RedisError.timeout(host: host, port: port, operation: "send", seconds: timeoutSeconds) }
                throw RedisError.connect(host: host, port: port, errno: .current)
            }
            sent += n
        }
    }

    private func fill() throws {
        guard fd >= 0 else { throw RedisError.connectionClosed(host: host, port: port) }
        if position > 0 && position == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            position = 0
        }
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == EAGAIN {
                throw RedisError.timeout(host: host, port: port, operation: "reply", seconds: timeoutSeconds)
            }
            if n < 0 { throw RedisError.connect(host: host, port: port, errno: .current) }
            if n == 0 { throw RedisError.connectionClosed(host: host, port: port) }
            buffer.append(contentsOf: chunk[0..<n])
            return
        }
    }

    /// One line without its CRLF.
    private func readLine() throws -> [UInt8] {
        var scanned = 0 // bytes after `position` known to hold no newline (fill() may move `position`)
        while true {
            if let i = buffer[(position + scanned)...].firstIndex(of: UInt8(ascii: "\n")) {
                var end = i
                if end > position && buffer[end - 1] == UInt8(ascii: "\r") { end -= 1 }
                let line = Array(buffer[position..<end])
                position = i + 1
                return line
            }
            scanned = buffer.count - position
            try fill()
        }
    }

    private func readBytes(_ count: Int) throws -> [UInt8] {
        while buffer.count - position < count { try fill() }
        let bytes = Array(buffer[position..<position + count])
        position += count
        return bytes
    }
}

/// RESP2 encoding and parsing, free of sockets so it can be tested on bytes.
public enum RESP {
    /// A command as an array of bulk strings.
    public static func encode(_ arguments: [String]) -> [UInt8] {
        var out = Array("*\(arguments.count)\r\n".utf8)
        for a in arguments {
            let bytes = Array(a.utf8)
            out += Array("$\(bytes.count)\r\n".utf8) + bytes + [13, 10]
        }
        return out
    }

    /// Parses one reply, reading lines and counted bytes from the callbacks.
    public static func parse(from readLine: () throws -> [UInt8], readBytes: (Int) throws -> [UInt8]) throws -> RESPValue {
        let line = try readLine()
        guard let kind = line.first else { throw RedisError.protocolError("empty reply line") }
        let rest = String(decoding: line.dropFirst(), as: UTF8.self)
        switch kind {
        case UInt8(ascii: "+"): return .simple(rest)
        case UInt8(ascii: "-"): return .error(rest)
        case UInt8(ascii: ":"):
            guard let n = Int64(rest) else { throw RedisError.protocolError("bad integer reply: \(rest)") }
            return .integer(n)
        case UInt8(ascii: "$"):
            guard let n = Int(rest), n >= -1 else { throw RedisError.protocolError("bad bulk length: \(rest)") }
            if n == -1 { return .bulk(nil) }
            let body = try readBytes(n + 2)
            guard body.suffix(2) == [13, 10] else { throw RedisError.protocolError("bulk string not ended by CRLF") }
            return .bulk(Array(body.prefix(n)))
        case UInt8(ascii: "*"):
            guard let n = Int(rest), n >= -1 else { throw RedisError.protocolError("bad array length: \(rest)") }
            if n == -1 { return .array(nil) }
            var items: [RESPValue] = []
            items.reserveCapacity(n)
            for _ in 0..<n { items.append(try parse(from: readLine, readBytes: readBytes)) }
            return .array(items)
        default:
            throw RedisError.protocolError("unknown reply type '\(Character(UnicodeScalar(kind)))' (is this a Redis server?)")
        }
    }

    /// Parses one reply from a byte buffer (tests, and replies read whole).
    public static func parse(_ bytes: [UInt8]) throws -> RESPValue {
        var position = 0
        return try parse(from: {
            guard let i = bytes[position...].firstIndex(of: 10) else { throw RedisError.protocolError("truncated reply") }
            let end = i > position && bytes[i - 1] == 13 ? i - 1 : i
            defer { position = i + 1 }
            return Array(bytes[position..<end])
        }, readBytes: { n in
            guard position + n <= bytes.count else { throw RedisError.protocolError("truncated reply") }
            defer { position += n }
            return Array(bytes[position..<position + n])
        })
    }
}
