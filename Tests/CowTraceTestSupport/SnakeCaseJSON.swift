import Foundation
import XCTest

/// Decodes one `--format json` object as cowtrace writes it for redis and
/// fork-profile, after checking the convention every such object keeps:
/// `"schema_version": 1` and snake_case keys all the way down.
public func decodeSnakeCaseJSON<T: Decodable>(_ type: T.Type, _ text: String,
                                              file: StaticString = #filePath, line: UInt = #line) throws -> T {
    let data = Data(text.utf8)
    let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any], text, file: file, line: line)
    XCTAssertEqual(object["schema_version"] as? Int, 1, text, file: file, line: line)
    func keys(_ value: Any) -> [String] {
        if let d = value as? [String: Any] { return d.keys + d.values.flatMap(keys) }
        if let a = value as? [Any] { return a.flatMap(keys) }
        return []
    }
    let camel = Set(keys(object).filter { $0.contains(where: \.isUppercase) })
    XCTAssertEqual(camel, [], "keys that are not snake_case", file: file, line: line)
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    return try decoder.decode(T.self, from: data)
}
