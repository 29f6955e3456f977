"""The documents of the tests/search corpus: every access case, a document number, a quoted phrase."""

from __future__ import annotations

PUBLIC = {"classification": "public", "allow": ["all-staff"]}
ARTICLES = "\n\n".join(
    f"Điều {n}. Quy định số {n}\nNội dung điều {n} về quản lý tài liệu mật và sổ theo dõi tài liệu, "
    + " ".join(f"khoản {n}.{i} quy định chi tiết việc lưu giữ hồ sơ tại cơ quan đại diện." for i in range(40))
    for n in range(1, 5)
)
DOCS: dict[str, tuple[str, dict[str, object]]] = {
    "nq-12": (
        "Số: 12/NQ-CP\nNghị quyết về hợp tác kinh tế số với Nhật Bản.\n\nĐiều 1. Mục tiêu\nThúc đẩy thương mại điện tử.",
        {
            **PUBLIC,
            "title": "Nghị quyết về hợp tác kinh tế số",
            "doc_type": "resolution",
            "issuer": "Chính phủ",
        },
    ),
    "cites-12": (
        "Báo cáo triển khai Nghị quyết 12/NQ-CP về kinh tế số với Nhật Bản: thương mại điện tử, "
        "thanh toán số, kinh tế số, hợp tác kinh tế số và chuyển đổi số doanh nghiệp.",
        {**PUBLIC, "title": "Báo cáo triển khai kinh tế số", "doc_type": "report", "issuer": "Bộ Ngoại giao"},
    ),
    "phrase": (
        "Trọng tài thương mại là phương thức giải quyết tranh chấp do các bên thỏa thuận.",
        {**PUBLIC, "title": "Giải quyết tranh chấp", "doc_type": "guidance"},
    ),
    "apart": (
        "Tranh chấp thương mại giữa doanh nghiệp được giải quyết tại tòa án; trọng tài viên phải độc lập. "
        "Tranh chấp thương mại, giải quyết tranh chấp, thỏa thuận giải quyết tranh chấp thương mại.",
        {**PUBLIC, "title": "Tranh chấp thương mại tại tòa án", "doc_type": "report"},
    ),
    "secret-protection": (
        "Phương án bảo hộ công dân tuyệt mật: sơ tán công dân Việt Nam khỏi vùng xung đột, bảo hộ công dân.",
        {
            "classification": "secret",
            "allow": ["unit:hq/consular"],
            "title": "Phương án bảo hộ công dân",
            "doc_type": "cable",
            "issuer": "Cục An ninh",
            "owner_unit": "hq/security",
        },
    ),
    "consular-protection": (
        "Hướng dẫn bảo hộ công dân Việt Nam ở nước ngoài: thăm lãnh sự, cấp giấy tờ, hỗ trợ về nước.",
        {**PUBLIC, "title": "Hướng dẫn bảo hộ công dân", "doc_type": "guidance", "issuer": "Cục Lãnh sự"},
    ),
    "unit-only": (
        "Bảo hộ công dân: danh sách liên lạc khẩn cấp của đơn vị, chỉ dành cho cán bộ đơn vị.",
        {
            "classification": "internal",
            "allow": ["unit:hq/consular"],
            "title": "Danh sách liên lạc",
            "issuer": "Phòng X",
        },
    ),
    "english": (
        "Report on consular protection of Vietnamese citizens abroad and emergency evacuation.",
        {**PUBLIC, "title": "Consular protection report", "language": "en", "doc_type": "report"},
    ),
    "long": (ARTICLES, {**PUBLIC, "title": "Thông tư về quản lý tài liệu mật", "doc_type": "circular"}),
}
