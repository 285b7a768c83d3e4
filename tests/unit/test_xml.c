/* xml: S3 answers as lakeFS and S3 write them, and hostile ones. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "lakefuse/xml.h"

#define S(lit) lit, sizeof(lit) - 1

static void test_error(void)
{
    char code[32], msg[64];
    CHECK_INT(lf_xml_parse_error(S("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                                   "<Error><Code>NoSuchKey</Code><Message>The specified key "
                                   "does not exist.</Message><Resource>/r/k</Resource></Error>"),
                                 code, sizeof(code), msg, sizeof(msg)),
              0);
    CHECK_STR(code, "NoSuchKey");
    CHECK_STR(msg, "The specified key does not exist.");
    /* A message longer than the caller's room is dropped, not cut. */
    CHECK_INT(lf_xml_parse_error(S("<Error><Code>SlowDown</Code><Message>0123456789</Message>"
                                   "</Error>"),
                                 code, sizeof(code), msg, 4),
              0);
    CHECK_STR(code, "SlowDown");
    CHECK_STR(msg, "");
    CHECK_INT(lf_xml_parse_error(S("<html>bad gateway</html>"), code, sizeof(code), msg,
                                 sizeof(msg)),
              -EIO);
    CHECK_INT(lf_xml_parse_error(S("<Error><Code>"), code, sizeof(code), msg, sizeof(msg)),
              -EIO);
    CHECK_STR(code, "");

    CHECK_INT(lf_s3_code_errno("NoSuchKey"), -ENOENT);
    CHECK_INT(lf_s3_code_errno("NoSuchBucket"), -ENOENT);
    CHECK_INT(lf_s3_code_errno("AccessDenied"), -EACCES);
    CHECK_INT(lf_s3_code_errno("SignatureDoesNotMatch"), -EACCES);
    CHECK_INT(lf_s3_code_errno("ErrReadOnlyRepository"), -EROFS);
    CHECK_INT(lf_s3_code_errno("SlowDown"), -EAGAIN);
    CHECK_INT(lf_s3_code_errno("NotImplemented"), -ENOTSUP);
    CHECK_INT(lf_s3_code_errno("SomethingNew"), -EIO);
    CHECK_INT(lf_s3_code_errno(NULL), -EIO);
}

static void test_buckets(void)
{
    char **names;
    size_t n;
    CHECK_INT(lf_xml_parse_buckets(S("<ListAllMyBucketsResult><Owner><ID>x</ID></Owner>"
                                     "<Buckets><Bucket><Name>demo</Name><CreationDate>"
                                     "2026-01-01T00:00:00Z</CreationDate></Bucket><Bucket>"
                                     "<Name>other</Name></Bucket></Buckets>"
                                     "</ListAllMyBucketsResult>"),
                                   &names, &n),
              0);
    CHECK_INT(n, 2);
    if (n == 2) {
        CHECK_STR(names[0], "demo");
        CHECK_STR(names[1], "other");
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    CHECK_INT(lf_xml_parse_buckets(S("<ListAllMyBucketsResult><Buckets/>"
                                     "</ListAllMyBucketsResult>"),
                                   &names, &n),
              0);
    CHECK_INT(n, 0);
    free(names);
    CHECK_INT(lf_xml_parse_buckets(S("<ListBucketResult/>"), &names, &n), -EIO);
}

static void test_list_page(void)
{
    struct lf_list_page p;
    /* lakeFS ignores encoding-type=url: raw keys, '%' and '&' included. */
    CHECK_INT(lf_xml_parse_list_page(
                  S("<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                    "<Name>demo</Name><Prefix>main/</Prefix><KeyCount>3</KeyCount>"
                    "<MaxKeys>2</MaxKeys><Delimiter>/</Delimiter><IsTruncated>true"
                    "</IsTruncated><NextContinuationToken>bWFpbi9i</NextContinuationToken>"
                    "<Contents><Key>main/a%20b&amp;c.csv</Key><LastModified>"
                    "2026-11-24T10:00:00.000Z</LastModified><ETag>\"0123abcd\"</ETag>"
                    "<Size>1234567890123</Size><StorageClass>STANDARD</StorageClass>"
                    "</Contents><CommonPrefixes><Prefix>main/dir/</Prefix></CommonPrefixes>"
                    "</ListBucketResult>"),
                  &p),
              0);
    CHECK_INT(p.nentries, 1);
    CHECK_INT(p.nprefixes, 1);
    CHECK(p.truncated);
    CHECK_STR(p.next_token, "bWFpbi9i");
    if (p.nentries == 1) {
        CHECK_STR(p.entries[0].key, "main/a%20b&c.csv");
        CHECK_STR(p.entries[0].attr.etag, "0123abcd");
        CHECK_INT(p.entries[0].attr.size, 1234567890123LL);
        CHECK_INT(p.entries[0].attr.last_modified, 1795514400LL);
    }
    if (p.nprefixes == 1)
        CHECK_STR(p.prefixes[0], "main/dir/");
    lf_list_page_free(&p);

    /* S3 proper does encode when asked, and says so. */
    CHECK_INT(lf_xml_parse_list_page(S("<ListBucketResult><EncodingType>url</EncodingType>"
                                       "<IsTruncated>false</IsTruncated><Contents><Key>"
                                       "main/a%20b%2Bc</Key><Size>0</Size></Contents>"
                                       "</ListBucketResult>"),
                                     &p),
              0);
    CHECK_INT(p.nentries, 1);
    CHECK(!p.truncated);
    CHECK(p.next_token == NULL);
    if (p.nentries == 1)
        CHECK_STR(p.entries[0].key, "main/a b+c");
    lf_list_page_free(&p);

    /* Things a broken or hostile server may send. */
    CHECK_INT(lf_xml_parse_list_page(S("<ListBucketResult><IsTruncated>true</IsTruncated>"
                                       "</ListBucketResult>"),
                                     &p),
              -EIO);
    CHECK_INT(lf_xml_parse_list_page(S("<ListBucketResult><EncodingType>url</EncodingType>"
                                       "<Contents><Key>main/a%00b</Key></Contents>"
                                       "</ListBucketResult>"),
                                     &p),
              -EIO);
    CHECK_INT(lf_xml_parse_list_page(S("<ListBucketResult><Contents><Key>k</Key><Size>-1"
                                       "</Size></Contents></ListBucketResult>"),
                                     &p),
              -EIO);
    CHECK_INT(lf_xml_parse_list_page(S("<ListBucketResult><Contents><Size>1</Size>"
                                       "</Contents></ListBucketResult>"),
                                     &p),
              -EIO);
    CHECK_INT(lf_xml_parse_list_page(S("<ListBucketResult><Contents><Key>k</Key>"),
                                     &p),
              -EIO);
    CHECK(p.entries == NULL && p.nentries == 0);
}

static void test_hostile(void)
{
    struct lf_list_page p;
    /* Entity expansion ("billion laughs") and external entities: refused
     * before the parser sees a DTD. */
    CHECK_INT(lf_xml_parse_list_page(S("<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a "
                                       "\"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;\">]>"
                                       "<ListBucketResult><Contents><Key>&b;</Key>"
                                       "</Contents></ListBucketResult>"),
                                     &p),
              -EIO);
    CHECK_INT(lf_xml_parse_list_page(S("<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY x SYSTEM"
                                       " \"file:///etc/passwd\">]><ListBucketResult><Contents>"
                                       "<Key>&x;</Key></Contents></ListBucketResult>"),
                                     &p),
              -EIO);
    /* An undeclared entity is a parse error, not an empty name. */
    CHECK_INT(lf_xml_parse_list_page(S("<ListBucketResult><Contents><Key>&x;</Key>"
                                       "</Contents></ListBucketResult>"),
                                     &p),
              -EIO);

    /* Deep nesting. */
    size_t depth = 5000, len = 0;
    char *deep = malloc(depth * 7 + 64);
    len += (size_t)sprintf(deep, "<ListBucketResult>");
    for (size_t i = 0; i < depth; i++)
        len += (size_t)sprintf(deep + len, "<a>");
    for (size_t i = 0; i < depth; i++)
        len += (size_t)sprintf(deep + len, "</a>");
    len += (size_t)sprintf(deep + len, "</ListBucketResult>");
    CHECK_INT(lf_xml_parse_list_page(deep, len, &p), -EIO);
    free(deep);

    /* Over the size bound: refused without parsing. */
    size_t big = LF_XML_MAX + 1;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    memcpy(huge, "<ListBucketResult>", 18);
    memcpy(huge + big - 19, "</ListBucketResult>", 19);
    CHECK_INT(lf_xml_parse_list_page(huge, big, &p), -EIO);
    free(huge);

    CHECK_INT(lf_xml_parse_list_page("", 0, &p), -EIO);
    CHECK_INT(lf_xml_parse_list_page(NULL, 0, &p), -EIO);
    CHECK_INT(lf_xml_parse_list_page(S("\xff\xfe<\x00L"), &p), -EIO);
}

static void test_results(void)
{
    char etag[LF_ETAG_MAX];
    char *id = NULL;
    CHECK_INT(lf_xml_parse_copy_result(S("<CopyObjectResult><LastModified>2026-11-24T10:00:00Z"
                                         "</LastModified><ETag>\"abc123\"</ETag>"
                                         "</CopyObjectResult>"),
                                       etag),
              0);
    CHECK_STR(etag, "abc123");
    /* S3 may report a failed copy inside a 200 answer. */
    CHECK_INT(lf_xml_parse_copy_result(S("<Error><Code>NoSuchKey</Code></Error>"), etag),
              -ENOENT);
    CHECK_INT(lf_xml_parse_copy_result(S("<Error><Code>InternalError</Code></Error>"), etag),
              -EIO);
    CHECK_INT(lf_xml_parse_copy_result(S("<CopyObjectResult/>"), etag), -EIO);

    CHECK_INT(lf_xml_parse_upload_id(S("<InitiateMultipartUploadResult><Bucket>b</Bucket>"
                                       "<Key>k</Key><UploadId>u-1</UploadId>"
                                       "</InitiateMultipartUploadResult>"),
                                     &id),
              0);
    CHECK_STR(id, "u-1");
    free(id);
    CHECK_INT(lf_xml_parse_upload_id(S("<InitiateMultipartUploadResult><UploadId/>"
                                       "</InitiateMultipartUploadResult>"),
                                     &id),
              -EIO);
    CHECK(id == NULL);

    struct lf_part parts[2] = {{1, "aa"}, {2, "bb"}};
    struct lf_buf b = LF_BUF_INIT;
    CHECK_INT(lf_xml_build_complete(&b, parts, 2), 0);
    CHECK(strstr(b.data, "<Part><PartNumber>1</PartNumber><ETag>\"aa\"</ETag></Part><Part>"
                         "<PartNumber>2</PartNumber><ETag>\"bb\"</ETag></Part>") != NULL);
    lf_buf_free(&b);
    struct lf_part bad = {1, "a<b"};
    CHECK_INT(lf_xml_build_complete(&b, &bad, 1), -EINVAL);
    lf_buf_free(&b);

    CHECK_INT(lf_xml_parse_complete_result(S("<CompleteMultipartUploadResult><ETag>"
                                             "\"ff-3\"</ETag></CompleteMultipartUploadResult>"),
                                           etag),
              0);
    CHECK_STR(etag, "ff-3");
    CHECK_INT(lf_xml_parse_complete_result(S("<Error><Code>InvalidPart</Code></Error>"), etag),
              -EINVAL);
}

int main(void)
{
    test_error();
    test_buckets();
    test_list_page();
    test_hostile();
    test_results();
    return check_summary("test_xml");
}
