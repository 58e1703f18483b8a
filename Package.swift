// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "coffer",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "cofferd", targets: ["cofferd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // C libraries, from Debian's libsodium-dev and liblmdb-dev.
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        .systemLibrary(
            name: "CLMDB",
            pkgConfig: "lmdb",
            providers: [.apt(["liblmdb-dev"])]
        ),

        // Names, limits and errors shared by every layer; no C, no I/O.
        .target(name: "CofferCore"),

        // Keys, sealing and encryption at rest: the only importer of libsodium.
        .target(
            name: "CofferCrypto",
            dependencies: ["CSodium", "CofferCore"]
        ),

        // The LMDB layer and the connection store: the only importer of LMDB.
        .target(
            name: "CofferStore",
            dependencies: [
                "CLMDB",
                "CofferCore",
                "CofferCrypto",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),

        // The protocol: generated protobuf code for proto/coffer/v1 and the socket framing.
        .target(
            name: "CofferWire",
            dependencies: [
                "CofferCore",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),

        // The daemon's command line: thin, it parses arguments and calls the modules above.
        .executableTarget(
            name: "cofferd",
            dependencies: [
                "CofferCore",
                "CofferCrypto",
                "CofferStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // Helpers for tests: temporary directories, canaries, running the built binaries.
        .target(
            name: "CofferTestSupport",
            dependencies: ["CofferCore", "CofferCrypto"],
            path: "Tests/CofferTestSupport"
        ),

        .testTarget(
            name: "CofferCoreTests",
            dependencies: ["CofferCore"]
        ),
        .testTarget(
            name: "CofferCryptoTests",
            dependencies: ["CofferCrypto", "CofferTestSupport"]
        ),
        .testTarget(
            name: "CofferStoreTests",
            dependencies: ["CofferStore", "CofferCrypto", "CofferTestSupport"]
        ),
        .testTarget(
            name: "CofferdTests",
            dependencies: ["CofferTestSupport"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
