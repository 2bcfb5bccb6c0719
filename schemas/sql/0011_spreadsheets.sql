-- Spreadsheet feeds: XLSX, XLSM, XLSB, XLS and ODS files, pulled as CSV files are.
ALTER TABLE inventory_feeds DROP CONSTRAINT inventory_feeds_resource_type_check;
ALTER TABLE inventory_feeds ADD CONSTRAINT inventory_feeds_resource_type_check
    CHECK (resource_type IN ('webhook', 'ftp_csv', 'spreadsheet', 'xml', 'json'));
