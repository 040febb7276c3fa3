import Foundation

/// `--format json` of the commands that encode a Codable report (redis,
/// fork-profile, oom, stat --oom, simulate): snake_case keys, sorted, one
/// object per line (simulate: one pretty-printed object), and a
/// `schema_version` (docs/exports.md has the schemas).
enum SnakeCaseJSON {
    static let schemaVersion = 1

    static func line<T: Encodable>(_ value: T) throws -> String {
        try encode(value, [.sortedKeys, .withoutEscapingSlashes])
    }

    /// The same as `line`, indented over several lines.
    static func prettyPrinted<T: Encodable>(_ value: T) throws -> String {
        try encode(value, [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
    }

    private static func encode<T: Encodable>(_ value: T, _ formatting: JSONEncoder.OutputFormatting) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = formatting
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return String(decoding: try encoder.encode(Versioned(value: value)), as: UTF8.self)
    }

    /// The value's own keys with `schema_version` beside them.
    private struct Versioned<T: Encodable>: Encodable {
        let value: T
        enum Key: String, CodingKey { case schemaVersion }
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: Key.self)
            try c.encode(SnakeCaseJSON.schemaVersion, forKey: .schemaVersion)
            try value.encode(to: encoder)
        }
    }
}
