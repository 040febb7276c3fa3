import ArgumentParser
import CowTraceFormat

/// The --format values one command supports: its help lists only those, and
/// the parser refuses the others naming the ones it takes. Commands that
/// print every format keep a plain OutputFormat.
protocol FormatSet { static var allowed: [OutputFormat] { get } }

/// Commands whose output is not a table (trees, timelines, reports): no csv.
enum TextOrJSON: FormatSet { static let allowed: [OutputFormat] = [.text, .json] }

struct FormatChoice<Allowed: FormatSet>: ExpressibleByArgument {
    let format: OutputFormat

    init(_ format: OutputFormat) { self.format = format }

    init?(argument: String) {
        guard let format = OutputFormat(rawValue: argument), Allowed.allowed.contains(format) else { return nil }
        self.format = format
    }

    static var text: Self { Self(.text) }
    static var allValueStrings: [String] { Allowed.allowed.map(\.rawValue) }
    static var defaultCompletionKind: CompletionKind { .list(allValueStrings) }
    var defaultValueDescription: String { format.rawValue }
}
