import CowTraceKit
/// What went wrong talking to Redis or finding it: one line each, saying
/// what to do.
public enum RedisError: Error, CustomStringConvertible, Equatable {
    case badAddress(host: String)
    case notListening(host: String, port: UInt16)
    case connect(host: String, port: UInt16, errno: Errno)
    case timeout(host: String, port: UInt16, operation: String, seconds: Double)
    case connectionClosed(host: String, port: UInt16)
    case protocolError(String)
    /// The server answered with an error reply (-ERR, -NOAUTH, -NOPERM ...).
    case refused(host: String, port: UInt16, command: String, message: String)
    case unexpectedReply(host: String, port: UInt16, command: String, reply: String)
    case saveInProgress(host: String, port: UInt16)
    case notRedisServer(pid: Int32, actual: String)
    case noPort(pid: Int32)
    case pidMismatch(port: UInt16, expected: Int32, actual: Int32)
    case missingField(section: String, field: String)
    case noFork(pid: Int32, seconds: Double)
    case interrupted

    public var description: String {
        switch self {
        case .badAddress(let host):
            return "\(host) is not an IPv4 address: cowtrace talks to Redis on loopback (127.0.0.1)"
        case .notListening(let host, let port):
            return "no Redis listening on \(host):\(port): start redis-server or pass --port"
        case .connect(let host, let port, let errno):
            return "cannot connect to Redis at \(host):\(port): \(errno)"
        case .timeout(let host, let port, let operation, let seconds):
            return "Redis at \(host):\(port) did not answer (\(operation)) within \(formatSeconds(seconds)) s: is it busy, or not Redis?"
        case .connectionClosed(let host, let port):
            return "Redis at \(host):\(port) closed the connection: check its log (maxclients, protected-mode, TLS-only port?)"
        case .protocolError(let detail):
            return "not a Redis (RESP) reply: \(detail)"
        case .refused(let host, let port, let command, let message):
            var hint = ""
            if message.hasPrefix("NOAUTH") || message.hasPrefix("WRONGPASS") {
                hint = ": set REDISCLI_AUTH to the password"
            } else if message.hasPrefix("NOPERM") {
                hint = ": the ACL user lacks this command"
            } else if message.contains("unknown command") {
                hint = ": the command may be renamed or disabled (rename-command)"
            }
            return "Redis at \(host):\(port) refused \(command): \(message)\(hint)"
        case .unexpectedReply(let host, let port, let command, let reply):
            return "Redis at \(host):\(port) answered \(command) with \(reply)"
        case .saveInProgress(let host, let port):
            return "a background save is already in progress on Redis at \(host):\(port): wait for it to end, or run without --trigger to profile the next one"
        case .notRedisServer(let pid, let actual):
            return "pid \(pid) is not redis-server (it is \(actual))"
        case .noPort(let pid):
            return "redis-server pid \(pid) listens on no TCP port cowtrace can find: pass --port"
        case .pidMismatch(let port, let expected, let actual):
            return "the Redis on port \(port) is pid \(actual), not pid \(expected): drop --pid or --port"
        case .missingField(let section, let field):
            return "Redis INFO \(section) has no \(field): this Redis is too old (cowtrace needs Redis 6.2 or later)"
        case .noFork(let pid, let seconds):
            return "redis-server pid \(pid) did not fork within \(formatSeconds(seconds)) s: pass --trigger to start a BGSAVE, or a longer --timeout"
        case .interrupted:
            return "interrupted before Redis forked"
        }
    }
}

func formatSeconds(_ s: Double) -> String {
    s == s.rounded() ? String(Int(s)) : String(format: "%.1f", s)
}
