#if canImport(Glibc)
import Glibc
#endif

/// Reads a /proc or /sys file whole. These report a size of 0, so this reads
/// until EOF instead of trusting stat().
public func readPseudoFile(_ path: String) -> String? {
    readPseudoFileBytes(path).map { String(decoding: $0, as: UTF8.self) }
}

/// The bytes of a /proc or /sys file (read to its end), or nil if it cannot be opened.
public func readPseudoFileBytes(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var data = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        data.append(contentsOf: chunk[0..<n])
    }
    return data
}
