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

/// One raw HTTP request over a fresh connection (IPv4, or IPv6 when `host`
/// holds a colon), read to EOF: the server closes.
public func httpExchange(port: UInt16, _ raw: String, host: String = "127.0.0.1") throws -> HTTPResponse {
    let v6 = host.contains(":")
    let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw HTTPExchangeError.system("socket", errno) }
    defer { close(fd) }
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
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
    guard rc == 0 else { throw HTTPExchangeError.system("connect", errno) }
    let bytes = Array(raw.utf8)
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var data = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        data.append(contentsOf: buffer[0..<n])
    }
    let text = String(decoding: data, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { throw HTTPExchangeError.noHeaders(text) }
    let head = text[..<split.lowerBound].components(separatedBy: "\r\n")
    var headers: [String: String] = [:]
    for line in head.dropFirst() {
        if let colon = line.firstIndex(of: ":") {
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
    }
    let status = Int(head[0].split(separator: " ")[1]) ?? 0
    return HTTPResponse(status: status, headers: headers, body: String(text[split.upperBound...]))
}
