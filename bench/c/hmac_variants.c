/* Why relay keeps precomputed HMAC-SHA1 pad states: four ways to compute the SRTP tag of a
 * 200-byte packet (204 bytes with the ROC), in plain C, ns per packet. See bench/RESULTS.md.
 *   cc -O2 bench/c/hmac_variants.c -lcrypto -o /tmp/hmac_variants && /tmp/hmac_variants */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(){
  unsigned char key[20]={3},buf[256]={0},md[20]; unsigned int l; int N=1000000;
  SHA_CTX i0,o0,s; unsigned char blk[64]={0}; memcpy(blk,key,20);
  for(int k=0;k<64;k++)blk[k]^=0x36; SHA1_Init(&i0); SHA1_Update(&i0,blk,64);
  for(int k=0;k<64;k++)blk[k]^=0x36^0x5c; SHA1_Init(&o0); SHA1_Update(&o0,blk,64);
  for(int rep=0;rep<3;rep++){
  double t=now();
  for(int i=0;i<N;i++){ buf[0]=i; s=i0; SHA1_Update(&s,buf,204); SHA1_Final(md,&s); s=o0; SHA1_Update(&s,md,20); SHA1_Final(md,&s);}
  double a=(now()-t)/N*1e9; t=now();
  for(int i=0;i<N;i++){ buf[0]=i; HMAC(EVP_sha1(),key,20,buf,204,md,&l);}
  double b=(now()-t)/N*1e9; t=now();
  HMAC_CTX*h=HMAC_CTX_new(); HMAC_Init_ex(h,key,20,EVP_sha1(),NULL);
  for(int i=0;i<N;i++){ buf[0]=i; HMAC_Init_ex(h,NULL,0,NULL,NULL); HMAC_Update(h,buf,204); HMAC_Final(h,md,&l);}
  double c=(now()-t)/N*1e9;
  EVP_MAC*mac=EVP_MAC_fetch(NULL,"HMAC",NULL); EVP_MAC_CTX*mc=EVP_MAC_CTX_new(mac);
  OSSL_PARAM p[]={OSSL_PARAM_construct_utf8_string("digest","SHA1",0),OSSL_PARAM_construct_end()};
  EVP_MAC_init(mc,key,20,p); size_t ol; t=now();
  for(int i=0;i<N;i++){ buf[0]=i; EVP_MAC_init(mc,NULL,0,NULL); EVP_MAC_update(mc,buf,204); EVP_MAC_final(mc,md,&ol,20);}
  double d=(now()-t)/N*1e9;
  printf("pads %.0f ns, HMAC() %.0f ns, HMAC_CTX reinit %.0f ns, EVP_MAC reinit %.0f ns\n",a,b,c,d);}
}
