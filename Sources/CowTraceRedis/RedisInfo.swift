import CowTraceKit
import Foundation

/// The reply to INFO: `field:value` lines under `# Section` headers.
public struct RedisInfo: Equatable, Sendable {
    public var fields: [String: String]

    public init(parsing text: String) {
        var fields: [String: String] = [:]
        for raw in text.split(whereSeparator: \.isNewline) { // "\r\n" is one Character
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = String(line[line.index(after: colon)...])
        }
        self.fields = fields
    }

    public subscript(field: String) -> String? { fields[field] }

    public func integer(_ field: String) -> Int64? { fields[field].flatMap { Int64($0) } }
}
