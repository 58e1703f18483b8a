// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "coffer",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "cofferd", targets: ["cofferd"]),
        .executable(name: "coffer", targets: ["coffer"]),
        .library(name: "CofferClient", targets: ["CofferClient"]),
        // For the benchmark package in benchmarks/, which depends on this one by path.
        .library(name: "CofferServer", targets: ["CofferServer"]),
        .library(name: "CofferStore", targets: ["CofferStore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
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

        // Connection types: the registry (built in and from an operator's file), the check of a connection
        // against its type, templates, and how a step uses a typed connection (environment, curl config).
        .target(
            name: "CofferConnections",
            dependencies: ["CofferCore", "CofferCrypto"]
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

        // A cluster: the replication log in PostgreSQL, and the service that keeps a node's store caught up.
        .target(
            name: "CofferReplication",
            dependencies: [
                "CofferCore",
                "CofferStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // The protocol: generated protobuf code for proto/coffer/v1, the socket framing, and the one place
        // where the domain model and the wire types meet.
        .target(
            name: "CofferWire",
            dependencies: [
                "CofferConnections",
                "CofferCore",
                "CofferCrypto",
                "CCofferShims",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),

        // What Swift cannot import from Glibc: the layout of struct ucred for SO_PEERCRED.
        .target(name: "CCofferShims"),

        // The daemon: Unix-socket listeners, peer credentials, authorisation, audit, limits, lifecycle.
        .target(
            name: "CofferServer",
            dependencies: [
                "CCofferShims",
                "CofferConnections",
                "CofferCore",
                "CofferCrypto",
                "CofferStore",
                "CofferWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),

        // The client library any Swift worker or admin tool can import; blocking calls on a Unix socket.
        .target(
            name: "CofferClient",
            dependencies: ["CofferConnections", "CofferCore", "CofferCrypto", "CofferWire"]
        ),

        // What both command lines share: the error reporter and the parsing of durations.
        .target(
            name: "CofferCommandLine",
            dependencies: [
                "CofferCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // The daemon's command line: thin, it parses arguments and starts the server's services.
        .executableTarget(
            name: "cofferd",
            dependencies: [
                "CofferCommandLine",
                "CofferConnections",
                "CofferReplication",
                "CofferCore",
                "CofferCrypto",
                "CofferStore",
                "CofferServer",
                "CofferWire",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // The fuzz target for frame and request decoding: replays files when built normally; scripts/fuzz.sh
        // builds it for libFuzzer.
        .executableTarget(
            name: "coffer-fuzz",
            dependencies: ["CofferServer"]
        ),

        // The command line for admins and workers.
        .executableTarget(
            name: "coffer",
            dependencies: [
                "CofferClient",
                "CofferCommandLine",
                "CofferConnections",
                "CofferCrypto",
                "CofferCore",
                "CofferWire",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),

        // Helpers for tests: temporary directories, canaries, running the built binaries.
        .target(
            name: "CofferTestSupport",
            dependencies: ["CofferCore", "CofferCrypto", "CofferStore", "CofferWire"],
            path: "Tests/CofferTestSupport"
        ),

        .testTarget(
            name: "CofferCoreTests",
            dependencies: ["CofferCore"]
        ),
        .testTarget(
            name: "CofferConnectionsTests",
            dependencies: ["CofferConnections", "CofferCrypto", "CofferCore", "CofferTestSupport"]
        ),
        .testTarget(
            name: "CofferCryptoTests",
            dependencies: ["CofferCrypto", "CofferTestSupport"],
            // Read through #filePath, so that the vectors stay where their script writes them.
            exclude: ["Vectors"]
        ),
        .testTarget(
            name: "CofferStoreTests",
            dependencies: ["CofferStore", "CofferCrypto", "CofferTestSupport"],
            // Copied to temporary directories by the tests, which find them through #filePath.
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "CofferServerTests",
            dependencies: [
                "CofferServer", "CofferStore", "CofferCrypto", "CofferTestSupport", "CofferWire", "CofferCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "CofferReplicationTests",
            dependencies: [
                "CofferReplication", "CofferStore", "CofferCrypto", "CofferCore", "CofferTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "CofferWireTests",
            dependencies: ["CofferWire"]
        ),
        .testTarget(
            name: "CofferdTests",
            dependencies: [
                "CofferTestSupport", "CofferClient", "CofferWire", "CofferCrypto", "CofferCore", "CofferStore",
                "CofferConnections",
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
