import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An HTTP response as the tests read it.
public struct HTTPResponse {
    public var status: Int
    public var headers: [String: String]
    public var body: String
}

public enum HTTPExchangeError: Error {
    case system(String, Int32)
    case noHeaders(String)
}

/// A TCP connection to `host` (IPv4, or IPv6 when it holds a colon) and
/// `port`, with a receive timeout of `timeout` seconds.
public func tcpConnect(port: UInt16, host: String = "127.0.0.1", timeout: Int = 10) throws -> Int32 {
    let v6 = host.contains(":")
    let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw HTTPExchangeError.system("socket", errno) }
    var tv = timeval(tv_sec: timeout, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    let rc: Int32
    if v6 {
        var a = sockaddr_in6()
        a.sin6_family = sa_family_t(AF_INET6)
        a.sin6_port = port.bigEndian
        inet_pton(AF_INET6, host, &a.sin6_addr)
        rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
    } else {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        inet_pton(AF_INET, host, &a.sin_addr)
        rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    }
    guard rc == 0 else {
        let e = errno
        close(fd)
        throw HTTPExchangeError.system("connect", e)
    }
    return fd
}

/// Sends all of `raw` on `fd`.
public func sendAll(_ fd: Int32, _ raw: String) {
    let bytes = Array(raw.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        offset += n
    }
}

/// Reads one response from `fd`: its head, then Content-Length bytes of body
/// (none after a HEAD request), or to EOF when there is no Content-Length.
public func readHTTPResponse(_ fd: Int32, afterHead: Bool = false) throws -> HTTPResponse {
    var data = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 65536)
    var headEnd: Int?
    var wanted: Int?
    func parse() -> (Int, [String: String]) {
        let head = String(decoding: data[..<headEnd!], as: UTF8.self).components(separatedBy: "\r\n")
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            if let colon = line.firstIndex(of: ":") {
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        let parts = head[0].split(separator: " ")
        return (parts.count > 1 ? Int(parts[1]) ?? 0 : 0, headers)
    }
    while true {
        if let end = headEnd, let wanted, data.count - end - 4 >= wanted { break }
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        data.append(contentsOf: buffer[0..<n])
        if headEnd == nil, let r = findCRLFCRLF(data) {
            headEnd = r
            let headers = parse().1
            if let length = headers["content-length"].flatMap({ Int($0) }) { wanted = afterHead ? 0 : length }
        }
    }
    guard let end = headEnd else { throw HTTPExchangeError.noHeaders(String(decoding: data, as: UTF8.self)) }
    let (status, headers) = parse()
    let bodyBytes = data[(end + 4)...]
    let body = wanted.map { bodyBytes.prefix($0) } ?? bodyBytes
    return HTTPResponse(status: status, headers: headers, body: String(decoding: body, as: UTF8.self))
}

private func findCRLFCRLF(_ data: [UInt8]) -> Int? {
    guard data.count >= 4 else { return nil }
    for i in 0...(data.count - 4) where data[i] == 13 && data[i + 1] == 10 && data[i + 2] == 13 && data[i + 3] == 10 {
        return i
    }
    return nil
}

/// One raw HTTP request over a fresh connection (IPv4, or IPv6 when `host`
/// holds a colon); the response is read by its Content-Length (the
/// connection may be kept alive), or to EOF without one.
public func httpExchange(port: UInt16, _ raw: String, host: String = "127.0.0.1") throws -> HTTPResponse {
    let fd = try tcpConnect(port: port, host: host)
    defer { close(fd) }
    sendAll(fd, raw)
    return try readHTTPResponse(fd, afterHead: raw.hasPrefix("HEAD "))
}
