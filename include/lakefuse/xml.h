/* xml: the S3 answers lakefuse reads, parsed defensively.
 *
 * Server answers are untrusted input. Every parser here bounds the size
 * (LF_XML_MAX), refuses any document with a DTD (no entity expansion, no
 * external entities), never touches the network, bounds nesting depth and
 * keeps libxml2 quiet on stderr. A malformed answer is -EIO; the caller
 * logs which request produced it.
 */
#ifndef LAKEFUSE_XML_H
#define LAKEFUSE_XML_H

#include <stddef.h>

#include "lakefuse/buf.h"
#include "lakefuse/store.h"

#define LF_XML_MAX (32u * 1024 * 1024)

/* <Error><Code>..</Code><Message>..</Message></Error>. Fills what it finds
 * (empty strings otherwise); returns 0 when the document is an Error. */
int lf_xml_parse_error(const char *data, size_t len, char *code, size_t codecap, char *msg,
                       size_t msgcap);

/* An S3 error code as a negative errno (unknown codes: -EIO). */
int lf_s3_code_errno(const char *code);

/* ListAllMyBucketsResult: *names is a malloc'd array of malloc'd strings. */
int lf_xml_parse_buckets(const char *data, size_t len, char ***names, size_t *n);

/* ListBucketResult (V2). Keys are URL-decoded when the answer says
 * EncodingType=url (lakeFS never does; S3 does). A truncated page without
 * a continuation token is refused: following it could loop forever. */
int lf_xml_parse_list_page(const char *data, size_t len, struct lf_list_page *out);

/* CopyObjectResult / CopyPartResult; an <Error> inside a 200 answer is
 * mapped through lf_s3_code_errno. */
int lf_xml_parse_copy_result(const char *data, size_t len, char etag_out[LF_ETAG_MAX]);

/* InitiateMultipartUploadResult: *upload_id is malloc'd. */
int lf_xml_parse_upload_id(const char *data, size_t len, char **upload_id);

/* CompleteMultipartUpload request body. */
int lf_xml_build_complete(struct lf_buf *out, const struct lf_part *parts, size_t nparts);

/* CompleteMultipartUploadResult, or an <Error> sent with status 200. */
int lf_xml_parse_complete_result(const char *data, size_t len, char etag_out[LF_ETAG_MAX]);

#endif
