/// A NUL-terminated char array the kernel filled (comm, release: a C array
/// imported as a tuple), as a String; everything after the first NUL is dropped.
public func cString<T>(_ tuple: T) -> String {
    withUnsafeBytes(of: tuple) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
}
