//! The capture's type-torture table, shared by the tests that must carry
//! every type end to end (capture, migrate).

/// The type-torture table: every column type the capture decodes (MariaDB),
/// including generated and invisible columns.
pub const DDL: &str = "
CREATE DATABASE tt;
CREATE TABLE tt.torture (
  id INT PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
  mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
  d DECIMAL(65,30), d2 DECIMAL(10,2), f FLOAT, db DOUBLE, b BIT(64), b3 BIT(3),
  dt DATE, tm TIME, tm6 TIME(6), dtm DATETIME, dtm3 DATETIME(3), dtm6 DATETIME(6),
  ts TIMESTAMP NULL DEFAULT NULL, ts6 TIMESTAMP(6) NULL DEFAULT NULL, y YEAR,
  c CHAR(10), vc VARCHAR(300), tx TEXT, cl VARCHAR(20) CHARACTER SET latin1, c3 VARCHAR(20) CHARACTER SET utf8mb3,
  bn BINARY(4), vb VARBINARY(10), bl BLOB,
  e ENUM('a','b','c'), s SET('x','y','z'), j JSON, g GEOMETRY, p POINT, ip INET6, u UUID,
  gen INT AS (i + 1) VIRTUAL, gens INT AS (i * 2) STORED, inv INT INVISIBLE DEFAULT 7
) DEFAULT CHARSET=utf8mb4;
";

/// Three rows of it: the extremes of each type, zero/empty values, and NULLs.
pub const ROWS: &str = "
SET time_zone = '+00:00';
SET sql_mode = '';
INSERT INTO tt.torture (id, ti, tiu, si, siu, mi, miu, i, iu, bi, biu, d, d2, f, db, b, b3, dt, tm, tm6, dtm, dtm3, dtm6, ts, ts6, y,
  c, vc, tx, cl, c3, bn, vb, bl, e, s, j, g, p, ip, u) VALUES
 (1, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807, 18446744073709551615,
  '99999999999999999999999999999999999.999999999999999999999999999999', 12345678.90, 3.5, 1.7976931348623157e308,
  b'1111111111111111111111111111111111111111111111111111111111111111', b'101',
  '9999-12-31', '838:59:59', '-838:59:59.000000', '9999-12-31 23:59:59', '2026-11-27 12:34:56.789', '9999-12-31 23:59:59.999999',
  '2038-01-19 03:14:07', '2038-01-19 03:14:07.999999', 2155,
  'héllo', 'emoji 😀 and ñ', 'long text', 'café €', '日本語', X'0102', X'00FF', X'DEADBEEF',
  'c', 'x,z', '{\"a\": [1, 2.5, \"x\"],\n \"b\": null}', ST_GeomFromText('LINESTRING(0 0,1 1)'), POINT(1, 2),
  '2001:db8::1', '123e4567-e89b-12d3-a456-426614174000'),
 (2, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0,
  '-99999999999999999999999999999999999.999999999999999999999999999999', -0.01, -1.25, -2.5e-300,
  b'0', b'000',
  '0000-00-00', '-00:00:01.5', '00:00:00.000001', '0000-00-00 00:00:00', '1000-01-01 00:00:00.001', '1970-01-01 00:00:00.000001',
  '0000-00-00 00:00:00', '1970-01-01 00:00:01.000001', 0,
  '', '', '', '', '', X'', X'', X'',
  '', '', '[]', ST_GeomFromText('POINT(0 0)'), POINT(-1.5, 0), '::ffff:1.2.3.4', '00000000-0000-0000-0000-000000000000'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL);
";
