import Foundation

/// How a command prints what it found: bcc-style text, JSON lines or CSV.
/// Shared by the live tables, the recording's report and the CLI.
public enum OutputFormat: String, CaseIterable, Sendable {
    case text, json, csv
}

extension OutputFormat {
    /// A JSON string literal, quotes included.
    public static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// A CSV field, quoted when it holds a separator, a quote or a newline.
    public static func csvField(_ s: String) -> String {
        s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }
}
